"""Engine command lines: pinned argv per example, option checking, extraArgs, booleans."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from vlmr1_serving.__main__ import main
from vlmr1_serving.engines import ENGINES, EngineArgError, build_argv, known_options
from vlmr1_serving.spec import SpecError, parse_spec

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
    "vlmservice-vllm-ascend-310p.yaml": (
        [],
        {
            "argv": [
                "vllm", "serve", "/mnt/pvc/vlmr1-models/VLM-R1-Qwen2.5VL-3B-OVD-0321",
                "--host", "0.0.0.0", "--port", "8000",
                "--served-model-name", "ovd-qwen25vl-3b-310p",
                "--tensor-parallel-size", "1",
                "--max-model-len", "16384",
                "--dtype", "float16",
                "--limit-mm-per-prompt", '{"image":10}',
                "--max-num-seqs", "16",
                "--enforce-eager",
            ],
            "env": {
                "VLLM_NO_USAGE_STATS": "1",
                "DO_NOT_TRACK": "1",
                "ASCEND_RT_VISIBLE_DEVICES": "0",
                "PYTORCH_NPU_ALLOC_CONF": "max_split_size_mb:256",
            },
            "notes": [],
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


def _310p(**engine: Any) -> Any:
    return _spec({"name": "vllm-ascend", "maxModelLen": 4096, **engine}, accelerator="ascend310p")


def test_vllm_ascend_on_310p_runs_float16_eager_with_vlm_r1_allocator() -> None:
    out = build_argv(_310p(), "/ckpt", 8000, "m")
    assert out.argv[out.argv.index("--dtype") + 1] == "float16"
    assert out.argv.count("--dtype") == 1
    assert "--enforce-eager" in out.argv
    assert out.env["PYTORCH_NPU_ALLOC_CONF"] == "max_split_size_mb:256"
    # The same engine on the 910 keeps the model's dtype and graph mode.
    on_910 = build_argv(_spec({"name": "vllm-ascend"}), "/ckpt", 8000, "m")
    assert "--dtype" not in on_910.argv and "--enforce-eager" not in on_910.argv


@pytest.mark.parametrize(
    ("args", "dtype", "eager_flags"),
    [
        ({"dtype": "float16"}, "float16", ["--enforce-eager"]),
        ({"args": {"enforce-eager": False}}, "float16", ["--no-enforce-eager"]),
        ({"args": {"enforce-eager": True}}, "float16", ["--enforce-eager"]),
    ],
)
def test_explicit_310p_args_win_over_the_defaults(args: dict[str, Any], dtype: str, eager_flags: list[str]) -> None:
    argv = build_argv(_310p(**args), "/ckpt", 8000, "m").argv
    assert argv.count("--dtype") == 1 and argv[argv.index("--dtype") + 1] == dtype
    assert [a for a in argv if a.endswith("enforce-eager")] == eager_flags


@pytest.mark.parametrize(
    ("engine", "field", "why"),
    [
        ({"dtype": "bfloat16"}, "engine.dtype", "has no bfloat16"),
        ({"dtype": "auto"}, "engine.dtype", "float16 only"),
        ({"extraArgs": ["--dtype=bfloat16"]}, "engine.extraArgs", "set engine.dtype"),
        ({"maxModelLen": None}, "engine.maxModelLen", "out of memory"),
        ({"name": "xllm"}, "engine.name", "xllm supports Atlas A2/A3 (ascend) only"),
        ({"name": "vllm"}, "engine.name", "vllm on nvidia"),
    ],
)
def test_specs_the_310p_cannot_run_are_refused_with_the_reason(engine: dict[str, Any], field: str, why: str) -> None:
    data = {"name": "vllm-ascend", "maxModelLen": 4096, **engine}
    data = {k: v for k, v in data.items() if v is not None}
    model = {"uri": "/ckpt", "digest": DIGEST, "servedModelName": "m"}
    spec = {"model": model, "engine": data, "resources": {"accelerator": "ascend310p", "devicesPerReplica": 1}}
    with pytest.raises(SpecError) as err:
        parse_spec(spec)
    assert why in str(err.value), str(err.value)
    assert field in str(err.value), str(err.value)


@pytest.mark.parametrize(
    ("engine", "flags", "note"),
    [
        ({"name": "vllm", "dtype": "bfloat16"}, ["--dtype", "bfloat16"], None),
        ({"name": "vllm-ascend", "dtype": "auto"}, ["--dtype", "auto"], None),
        ({"name": "transformers", "dtype": "auto"}, ["--dtype", "auto"], None),
        ({"name": "xllm", "dtype": "float16"}, [], "engine.dtype=float16 is not applied"),
    ],
)
def test_dtype_is_a_field_each_engine_renders_or_notes(engine: dict[str, Any], flags: list[str], note: str) -> None:
    out = build_argv(_spec(engine), "/ckpt", 8000, "m")
    rendered = out.argv[out.argv.index("--dtype") : out.argv.index("--dtype") + 2] if "--dtype" in out.argv else []
    assert rendered == flags
    assert [n for n in out.notes if "dtype" in n] == ([] if note is None else [n for n in out.notes if note in n])
    assert note is None or any(note in n for n in out.notes)
    with pytest.raises(EngineArgError, match=r"set engine\.dtype instead"):
        build_argv(_spec({"name": "vllm", "args": {"dtype": "float16"}}), "/ckpt", 8000, "m")


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
