"""Reading the mounted spec: spec alone or whole object, model pinning, the served name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from vlmr1_serving.spec import SpecError, load_spec, parse_spec

REPO = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "0f" * 32


def test_whole_object_gives_the_name() -> None:
    served = load_spec(REPO / "examples" / "vlmservice-xllm-ascend.yaml", environ={})
    assert served.served_name == "rec-qwen25vl-3b-ascend"
    assert served.uri == "pvc://vlmr1-checkpoints/rec-ascend/checkpoints/checkpoint-800"
    assert served.digest.startswith("sha256:49f18278")


def test_spec_alone_as_the_operator_mounts_it(tmp_path: Path) -> None:
    whole = yaml.safe_load((REPO / "examples" / "vlmservice-vllm.yaml").read_text())
    path = tmp_path / "vlmservice.yaml"
    path.write_text(yaml.safe_dump(whole["spec"]))
    served = load_spec(path, environ={})
    assert served.served_name == "rec-qwen25vl-3b"  # model.servedModelName
    assert served.spec.engine.args["max-num-seqs"] == 128


def test_spec_alone_without_name_needs_one(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    spec = {
        "model": {"uri": "/ckpt", "digest": DIGEST},
        "resources": {"accelerator": "cpu", "devicesPerReplica": 0},
        "engine": {"name": "transformers"},
    }
    path.write_text(json.dumps(spec))
    with pytest.raises(SpecError, match="VLMR1_SERVICE_NAME"):
        load_spec(path, environ={})
    assert load_spec(path, environ={"VLMR1_SERVICE_NAME": "svc"}).served_name == "svc"
    assert load_spec(path, name="cli", environ={"VLMR1_SERVICE_NAME": "svc"}).served_name == "cli"


def test_from_job_must_be_resolved(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "examples" / "vlmservice-dev-cpu.yaml").read_text())
    data["spec"]["model"] = {"fromJob": {"name": "rec-qwen25vl-3b", "checkpoint": "best"}}
    path = tmp_path / "from-job.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError, match=r"fromJob rec-qwen25vl-3b/best\) is not resolved"):
        load_spec(path, environ={})
    served = load_spec(path, environ={"VLMR1_MODEL_URI": "/ckpt/checkpoint-3", "VLMR1_MODEL_DIGEST": DIGEST})
    assert (served.uri, served.digest, served.spec.model.from_job) == ("/ckpt/checkpoint-3", DIGEST, None)


def test_override_is_validated() -> None:
    data = yaml.safe_load((REPO / "examples" / "vlmservice-dev-cpu.yaml").read_text())
    with pytest.raises(SpecError, match="both a model uri and a model digest"):
        parse_spec(data, model_uri="/ckpt")
    with pytest.raises(SpecError, match="override is invalid"):
        parse_spec(data, model_uri="/ckpt", model_digest="sha256:short")


def test_invalid_spec_is_reported_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"model: {{uri: /x, digest: {DIGEST}}}\nengine: {{name: vllm, tensorParalelSize: 2}}\n")
    with pytest.raises(SpecError, match=r"bad\.yaml: not a valid VLMService spec"):
        load_spec(path, environ={})
    with pytest.raises(SpecError, match="cannot read the spec"):
        load_spec(tmp_path / "missing.yaml", environ={})
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(SpecError, match="expected a VLMService object or its spec"):
        load_spec(tmp_path / "list.yaml", environ={})
