"""The generated CRDs on a real Kubernetes API server (apiextensions-apiserver + etcd):
they are accepted as structural, every example is admitted, every bad manifest is
rejected with a message that names the field, and kubectl explain shows the models' field
docs (through the dev cluster's proxy, which publishes the CRDs' OpenAPI)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from vlmr1_core.api.vlmservice import AutoscalingSpec
from vlmr1_core.config import GrpoSpec

REPO = Path(__file__).resolve().parents[2]
CRDS = sorted((REPO / "crds").glob("*.yaml"))
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
BAD = sorted((REPO / "tests" / "vlmr1_core" / "bad_manifests").glob("*.yaml"))


@pytest.fixture(scope="module")
def cluster(control_plane: Any) -> Any:
    for crd in CRDS:
        control_plane.kubectl("apply", "--server-side", "-f", str(crd))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{p.stem}" for p in CRDS])
    return control_plane


@pytest.mark.parametrize("crd", CRDS, ids=lambda p: p.stem)
def test_crd_is_established_and_structural(cluster: Any, crd: Path) -> None:
    out = cluster.kubectl("get", f"crd/{crd.stem}", "-o", "json").stdout
    conditions = {c["type"]: c["status"] for c in json.loads(out)["status"]["conditions"]}
    assert conditions.get("Established") == "True"
    assert conditions.get("NamesAccepted") == "True"
    assert "NonStructuralSchema" not in conditions, conditions


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_is_accepted(cluster: Any, example: Path) -> None:
    result = cluster.kubectl(
        "apply", "--dry-run=server", "--validate=false", "-n", "default", "-f", str(example), check=False
    )
    assert result.returncode == 0, result.stderr
    assert "created (server dry run)" in result.stdout


def expected_field(path: Path) -> str:
    return path.read_text().splitlines()[0].removeprefix("# expect-field: ").strip()


@pytest.mark.parametrize("bad", BAD, ids=lambda p: p.stem)
def test_bad_manifest_is_rejected_naming_the_field(cluster: Any, bad: Path) -> None:
    result = cluster.kubectl(
        "apply", "--dry-run=server", "--validate=false", "-n", "default", "-f", str(bad), check=False
    )
    assert result.returncode != 0, f"{bad.name} was accepted:\n{result.stdout}"
    assert "is invalid" in result.stderr, result.stderr
    assert expected_field(bad) in result.stderr, result.stderr


def test_defaults_are_applied_by_the_server(cluster: Any) -> None:
    """A minimal job comes back with VLM-R1's defaults filled in (what kubectl get -o yaml shows)."""
    manifest = {
        "apiVersion": "vlmr1.io/v1alpha1",
        "kind": "GRPOJob",
        "metadata": {"name": "defaults", "namespace": "default"},
        "spec": {"model": {"uri": "hf://Qwen/Qwen2.5-VL-3B-Instruct"}, "datasets": [{"jsonl": "a.jsonl"}]},
    }
    result = cluster.kubectl(
        "create", "--dry-run=server", "--validate=false", "-o", "json", "-f", "-", input=json.dumps(manifest)
    )
    spec = json.loads(result.stdout)["spec"]
    assert spec["grpo"]["numGenerations"] == 8
    assert spec["grpo"]["beta"] == 0.04
    assert spec["training"]["learningRate"] == 1e-6
    assert spec["resources"]["accelerator"] == "nvidia"
    assert spec["runPolicy"]["backoffLimit"] == 3
    assert "lora" not in spec.get("finetuning", {})


def test_scale_subresource_respects_the_replica_bounds(cluster: Any) -> None:
    """kubectl scale on a VLMService writes spec.replicas.count, and the CEL bounds hold there too."""
    example = REPO / "examples" / "vlmservice-vllm.yaml"
    cluster.kubectl("apply", "--validate=false", "-n", "default", "-f", str(example))
    try:
        cluster.kubectl("scale", "-n", "default", "vlms/rec-qwen25vl-3b", "--replicas=3")
        count = cluster.kubectl(
            "get", "-n", "default", "vlms/rec-qwen25vl-3b", "-o", "jsonpath={.spec.replicas.count}"
        ).stdout
        assert count == "3"
        too_many = cluster.kubectl("scale", "-n", "default", "vlms/rec-qwen25vl-3b", "--replicas=9", check=False)
        assert too_many.returncode != 0
        assert "replicas.count must lie between replicas.min and replicas.max" in too_many.stderr
    finally:
        cluster.kubectl("delete", "-n", "default", "-f", str(example), "--wait=false")


def test_printer_columns(cluster: Any) -> None:
    example = REPO / "examples" / "grpojob-rec.yaml"
    cluster.kubectl("apply", "--validate=false", "-n", "default", "-f", str(example))
    try:
        header = cluster.kubectl("get", "grpo", "-n", "default").stdout.splitlines()[0].split()
        assert header == ["NAME", "PHASE", "STEP", "REWARD", "AGE"]
    finally:
        cluster.kubectl("delete", "-n", "default", "-f", str(example), "--wait=false")


def flat(text: str) -> str:
    """Whitespace collapsed: kubectl explain re-wraps descriptions at 76 columns."""
    return " ".join(text.split())


@pytest.mark.parametrize(
    ("path", "model", "field", "camel"),
    [
        ("grpojob.spec.grpo", GrpoSpec, "num_generations", "numGenerations"),
        (
            "vlmservice.spec.autoscaling",
            AutoscalingSpec,
            "scale_up_stabilization_seconds",
            "scaleUpStabilizationSeconds",
        ),
    ],
)
def test_kubectl_explain_shows_the_models_field_docs(
    cluster: Any, path: str, model: type[BaseModel], field: str, camel: str
) -> None:
    section = cluster.kubectl("explain", path).stdout
    description = model.model_fields[field].description
    assert description is not None
    assert f"{camel}\t<integer>" in section
    assert flat(description) in flat(section)
    one_field = cluster.kubectl("explain", f"{path}.{camel}").stdout
    assert f"FIELD: {camel} <integer>" in one_field
    assert flat(description) in flat(one_field)


def test_kubectl_explain_grpojob_spec_lists_the_trainer_sections(cluster: Any) -> None:
    out = cluster.kubectl("explain", "grpojob.spec").stdout
    assert "KIND:       GRPOJob" in out
    for section in ("model", "datasets", "rewards", "grpo", "training", "resources", "runPolicy"):
        assert f"\n  {section}\t<" in out, section


def test_kubectl_explain_metadata_is_the_servers_object_meta(cluster: Any) -> None:
    """metadata resolves to ObjectMeta as the API server documents it, not to the CRD's own
    metadata schema (a name rule only)."""
    out = cluster.kubectl("explain", "grpojob.metadata").stdout
    assert "FIELD: metadata <ObjectMeta>" in out
    assert "ownerReferences\t<[]OwnerReference>" in out
    assert "Annotations is an unstructured key value map" in flat(out)


def test_kubectl_leaves_field_validation_of_custom_resources_to_the_server(cluster: Any) -> None:
    """kubectl checks the kind's OpenAPI for the fieldValidation parameter before it sends
    fieldValidation=Strict; without it kubectl would validate from /openapi/v2, which the
    standalone server lacks, and fail there instead."""
    manifest = {
        "apiVersion": "vlmr1.io/v1alpha1",
        "kind": "GRPOJob",
        "metadata": {"name": "strict", "namespace": "default"},
        "spec": {"model": {"uri": "hf://Qwen/Qwen2.5-VL-3B-Instruct"}, "datasets": [{"jsonl": "a.jsonl"}], "bogus": 1},
    }
    result = cluster.kubectl(
        "create", "--dry-run=server", "--validate=strict", "-f", "-", input=json.dumps(manifest), check=False
    )
    assert result.returncode != 0
    assert 'strict decoding error: unknown field "spec.bogus"' in result.stderr, result.stderr
