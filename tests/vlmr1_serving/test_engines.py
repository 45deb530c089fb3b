"""Engine command lines: pinned argv per example, option checking, extraArgs, booleans."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from vlmr1_serving.__main__ import main
from vlmr1_serving.engines import ENGINES, EngineArgError, build_argv, known_options
from vlmr1_serving.spec import parse_spec

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
DIGEST = "sha256:" + "ab" * 32

#: Every examples/vlmservice-*.yaml, with the overrides a fromJob example needs, and the
#: exact argv and environment `--dry-run` prints for it (pvc root /mnt/pvc).
GOLDEN: dict[str, tuple[list[str], dict[str, Any]]] = {
    "vlmservice-vllm.yaml": (
        [],
        {
            "argv": [
                "vllm", "serve", "/mnt/pvc/vlmr1-checkpoints/rec-qwen25vl-3b/checkpoints/checkpoint-1200",
                "--host", "0.0.0.0", "--port", "8000",
                "--served-model-name", "rec-qwen25vl-3b",
                "--tensor-parallel-size", "1",
                "--max-model-len", "8192",
                "--limit-mm-per-prompt", '{"image":2}',
                "--gpu-memory-utilization", "0.9",
                "--max-num-seqs", "128",
            ],
            "env": {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"},
            "notes": [],
        },
    ),
    "vlmservice-xllm-ascend.yaml": (
        [],
        {
            "argv": [
                "xllm",
                "--model=/mnt/pvc/vlmr1-checkpoints/rec-ascend/checkpoints/checkpoint-800",
                "--devices=npu:0",
                "--port=8000",
                "--backend=vlm",
                "--model_id=rec-qwen25vl-3b-ascend",
                "--limit_image_per_prompt=4",
                "--block_size=128",
                "--enable_prefix_cache=true",
                "--max_tokens_per_batch=8192",
            ],
            "env": {"ASCEND_RT_VISIBLE_DEVICES": "0"},
            "notes": [
                "engine.maxModelLen=8192 is not applied: xllm has no context-length flag "
                "(bound the batch with engine.args.max-tokens-per-batch)"
            ],
        },
    ),
    "vlmservice-dev-cpu.yaml": (
        ["--model-uri", "pvc://vlmr1-checkpoints/rec-qwen25vl-3b/checkpoint-40", "--model-digest", DIGEST],
        {
            "argv": [
                "python", "-m", "vlmr1_serving.hfserver",
                "--model", "/mnt/pvc/vlmr1-checkpoints/rec-qwen25vl-3b/checkpoint-40",
                "--host", "0.0.0.0", "--port", "8000",
                "--served-model-name", "rec-dev",
                "--limit-images-per-prompt", "1",
            ],
            "env": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
            "notes": [],
        },
    ),
}  # fmt: skip


@pytest.fixture(autouse=True)
def _pvc_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLMR1_PVC_ROOT", "/mnt/pvc")
    for name in ("VLMR1_SERVING_PORT", "VLMR1_SERVICE_NAME", "VLMR1_MODEL_URI", "VLMR1_MODEL_DIGEST"):
        monkeypatch.delenv(name, raising=False)


def test_every_example_has_a_golden() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("vlmservice-*.yaml")) == sorted(GOLDEN)


@pytest.mark.parametrize("example", sorted(GOLDEN))
def test_dry_run_argv_is_pinned(example: str, capsys: pytest.CaptureFixture[str]) -> None:
    extra, expected = GOLDEN[example]
    assert main(["--spec", str(EXAMPLES / example), "--dry-run", *extra]) == 0
    assert json.loads(capsys.readouterr().out) == expected


def _spec(engine: dict[str, Any], **resources: Any) -> Any:
    accelerator = {"vllm": "nvidia", "transformers": "cpu"}.get(engine["name"], "ascend")
    res = {"accelerator": accelerator, "devicesPerReplica": 0 if accelerator == "cpu" else 1, **resources}
    data = {"model": {"uri": "/ckpt", "digest": DIGEST, "servedModelName": "m"}, "engine": engine, "resources": res}
    return parse_spec(data).spec


def test_unknown_arg_is_rejected_with_the_known_options() -> None:
    spec = _spec({"name": "vllm", "args": {"max-num-seqz": 4}})
    with pytest.raises(EngineArgError) as err:
        build_argv(spec, "/ckpt", 8000, "m")
    message = str(err.value)
    assert "engine.args.max-num-seqz is not an option vlmr1 knows for vllm" in message
    assert "engine.extraArgs" in message
    for known in known_options("vllm"):
        assert f"  {known} (" in message


@pytest.mark.parametrize("engine", ENGINES)
def test_each_engine_rejects_unknown_args(engine: str) -> None:
    spec = _spec({"name": engine, "args": {"no-such-option": 1}})
    with pytest.raises(EngineArgError, match=f"not an option vlmr1 knows for {engine}"):
        build_argv(spec, "/ckpt", 8000, "m")


def test_unknown_arg_exits_2_in_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = yaml.safe_load((EXAMPLES / "vlmservice-vllm.yaml").read_text())
    data["spec"]["engine"]["args"]["max-num-seqz"] = 4
    spec_file = tmp_path / "svc.yaml"
    spec_file.write_text(yaml.safe_dump(data))
    assert main(["--spec", str(spec_file), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "max-num-seqz" in err and "gpu-memory-utilization (float)" in err


def test_spec_fields_cannot_be_set_twice_through_args() -> None:
    spec = _spec({"name": "vllm", "args": {"tensor-parallel-size": 2}})
    with pytest.raises(EngineArgError, match=r"set engine\.tensorParallelSize instead"):
        build_argv(spec, "/ckpt", 8000, "m")


def test_wrong_type_is_rejected() -> None:
    spec = _spec({"name": "vllm", "args": {"max-num-seqs": "many"}})
    with pytest.raises(EngineArgError, match=r"max-num-seqs for vllm must be a int, got str 'many'"):
        build_argv(spec, "/ckpt", 8000, "m")
    spec = _spec({"name": "vllm", "args": {"enforce-eager": 1}})
    with pytest.raises(EngineArgError, match="must be a bool"):
        build_argv(spec, "/ckpt", 8000, "m")


def test_json_options_must_parse() -> None:
    spec = _spec({"name": "vllm", "args": {"mm-processor-kwargs": "{max_pixels: 3}"}})
    with pytest.raises(EngineArgError, match="must be a JSON string"):
        build_argv(spec, "/ckpt", 8000, "m")


@pytest.mark.parametrize("engine", ENGINES)
def test_extra_args_are_appended_verbatim(engine: str) -> None:
    extra = ["--some-new-flag", "x y", "--other=1"]
    argv = build_argv(_spec({"name": engine, "extraArgs": extra}), "/ckpt", 8000, "m").argv
    assert argv[-3:] == extra


def test_vllm_booleans_use_no_prefix_for_false() -> None:
    spec = _spec({"name": "vllm", "args": {"enforce-eager": True, "enable-prefix-caching": False}})
    argv = build_argv(spec, "/ckpt", 8000, "m").argv
    assert argv[-2:] == ["--enforce-eager", "--no-enable-prefix-caching"]


def test_vllm_non_negatable_false_is_omitted() -> None:
    spec = _spec({"name": "vllm", "args": {"enable-auto-tool-choice": False, "seed": 7}})
    assert build_argv(spec, "/ckpt", 8000, "m").argv[-2:] == ["--seed", "7"]


def test_xllm_booleans_are_explicit_gflags() -> None:
    spec = _spec({"name": "xllm", "args": {"enable-prefix-cache": False, "enable-chunked-prefill": True}})
    argv = build_argv(spec, "/ckpt", 8000, "m").argv
    assert argv[-2:] == ["--enable_prefix_cache=false", "--enable_chunked_prefill=true"]


def test_xllm_tensor_parallel_devices() -> None:
    spec = _spec({"name": "xllm", "tensorParallelSize": 4}, devicesPerReplica=4)
    out = build_argv(spec, "/ckpt", 9000, "m")
    assert "--devices=npu:0,npu:1,npu:2,npu:3" in out.argv and "--port=9000" in out.argv
    assert out.env == {"ASCEND_RT_VISIBLE_DEVICES": "0,1,2,3"}
    assert out.notes == []


def test_vllm_ascend_is_vllm_with_npu_env() -> None:
    engine = {"name": "vllm-ascend", "tensorParallelSize": 2, "args": {"gpu-memory-utilization": 0.85}}
    out = build_argv(_spec(engine, devicesPerReplica=2), "/ckpt", 8000, "m")
    assert out.argv[:3] == ["vllm", "serve", "/ckpt"]
    assert out.argv[out.argv.index("--tensor-parallel-size") + 1] == "2"
    assert out.argv[-2:] == ["--gpu-memory-utilization", "0.85"]
    assert out.env["ASCEND_RT_VISIBLE_DEVICES"] == "0,1"
    assert out.env["PYTORCH_NPU_ALLOC_CONF"] == "expandable_segments:True"


def test_host_is_configurable_for_http_engines() -> None:
    argv = build_argv(_spec({"name": "transformers"}), "/ckpt", 8123, "m", host="127.0.0.1").argv
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] == "8123"


def test_transformers_notes_unapplied_tensor_parallelism() -> None:
    spec = _spec({"name": "transformers", "tensorParallelSize": 2}, accelerator="nvidia", devicesPerReplica=2)
    assert "tensorParallelSize=2 is not applied" in build_argv(spec, "/ckpt", 8000, "m").notes[0]


@pytest.mark.parametrize("family", ["qwen3-vl", "qwen3.5", "glm4.1v"])
@pytest.mark.parametrize("engine", ["vllm", "vllm-ascend"])
def test_newer_families_serve_with_the_same_vllm_command(family: str, engine: str) -> None:
    """vLLM reads the architecture from the checkpoint's config.json (Qwen3-VL, Qwen3.5 and
    GLM-4.1V are native vLLM models), so a family adds no flag: the command equals Qwen2.5-VL's."""
    res = {"accelerator": "nvidia" if engine == "vllm" else "ascend", "devicesPerReplica": 1}

    def argv(name: str) -> list[str]:
        model = {"uri": "/ckpt", "digest": DIGEST, "servedModelName": "m", "family": name}
        spec = parse_spec({"model": model, "engine": {"name": engine}, "resources": res}).spec
        assert spec.model.family == name
        return build_argv(spec, "/ckpt", 8000, "m").argv

    assert argv(family) == argv("qwen2.5-vl")
    assert argv(family)[:3] == ["vllm", "serve", "/ckpt"]
