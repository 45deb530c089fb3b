"""Checkpoint fetch and digest verification: nothing is served unless every byte matches."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from vlmr1_core.checkpoints import CheckpointInfo, save_checkpoint
from vlmr1_serving import __main__ as entry
from vlmr1_serving.fetch import FetchError, fetch_checkpoint, parse_hf_uri, planned_path


def _write(folder: Path) -> None:
    (folder / "model.safetensors").write_bytes(b"weights" * 100)
    (folder / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    (folder / "sub").mkdir()
    (folder / "sub" / "tokenizer.json").write_text("{}")


@pytest.fixture
def checkpoint(tmp_path: Path) -> CheckpointInfo:
    return save_checkpoint(tmp_path / "run", 7, _write, metrics={"reward": 0.5})


def test_good_checkpoint_verifies(checkpoint: CheckpointInfo) -> None:
    fetched = fetch_checkpoint(str(checkpoint.path), checkpoint.digest)
    assert (fetched.path, fetched.digest, fetched.step) == (checkpoint.path, checkpoint.digest, 7)


def test_pvc_uri_resolves_under_the_pvc_root(checkpoint: CheckpointInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLMR1_PVC_ROOT", str(checkpoint.path.parent.parent))
    fetched = fetch_checkpoint("pvc://run/checkpoint-7", checkpoint.digest)
    assert fetched.path == checkpoint.path


def test_tampered_file_is_refused(checkpoint: CheckpointInfo) -> None:
    (checkpoint.path / "model.safetensors").write_bytes(b"other weights")
    with pytest.raises(FetchError, match=r"does not verify against its manifest:\n  changed: model.safetensors"):
        fetch_checkpoint(str(checkpoint.path), checkpoint.digest)


def test_missing_and_extra_files_are_refused(checkpoint: CheckpointInfo) -> None:
    (checkpoint.path / "sub" / "tokenizer.json").unlink()
    (checkpoint.path / "planted.py").write_text("import os")
    with pytest.raises(FetchError) as err:
        fetch_checkpoint(str(checkpoint.path), checkpoint.digest)
    assert "missing: sub/tokenizer.json" in str(err.value) and "extra: planted.py" in str(err.value)


def test_wrong_digest_in_spec_is_refused(checkpoint: CheckpointInfo) -> None:
    wrong = "sha256:" + "0" * 64
    with pytest.raises(FetchError) as err:
        fetch_checkpoint(str(checkpoint.path), wrong)
    message = str(err.value)
    assert f"digest mismatch: the spec pins model.digest {wrong}" in message
    assert checkpoint.digest in message and "vlmr1 checkpoints verify" in message


def test_missing_manifest_is_refused(checkpoint: CheckpointInfo) -> None:
    (checkpoint.path / "manifest.json").unlink()
    with pytest.raises(FetchError, match=r"no manifest\.json"):
        fetch_checkpoint(str(checkpoint.path), checkpoint.digest)


def test_missing_folder_and_builtin_are_refused(tmp_path: Path) -> None:
    digest = "sha256:" + "1" * 64
    with pytest.raises(FetchError, match="is not a folder"):
        fetch_checkpoint(str(tmp_path / "nowhere"), digest)
    with pytest.raises(FetchError, match="builtin models have no manifest"):
        fetch_checkpoint("builtin://tiny-qwen2.5-vl", digest)


def test_s3_checkpoint_is_downloaded_then_verified(checkpoint: CheckpointInfo, tmp_path: Path) -> None:
    calls: list[tuple[str, str]] = []

    def fake_s3(bucket: str, key: str, dest: Path) -> None:
        calls.append((bucket, key))
        shutil.copytree(checkpoint.path, dest)

    cache = tmp_path / "cache"
    fetched = fetch_checkpoint("s3://bucket/run/checkpoint-7", checkpoint.digest, downloader=fake_s3, cache_root=cache)
    assert fetched.path == cache / "s3" / "bucket" / "run" / "checkpoint-7"
    assert fetched.path == planned_path("s3://bucket/run/checkpoint-7", checkpoint.digest, cache_root=cache)
    fetch_checkpoint("s3://bucket/run/checkpoint-7", checkpoint.digest, downloader=fake_s3, cache_root=cache)
    assert calls == [("bucket", "run/checkpoint-7")]  # the second start reuses the download


class FakeHub:
    """A hub repository backed by a folder; records which files were asked for."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requested: list[list[str]] = []

    def __call__(self, repo_id: str, revision: str | None, filenames: list[str], dest: Path) -> None:
        assert repo_id == "org/rec"
        self.requested.append(list(filenames))
        for name in filenames:
            source = self.root / name
            if source.is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source, dest / name)
        # Like huggingface_hub's local_dir mode: its own metadata next to the files.
        (dest / ".cache" / "huggingface").mkdir(parents=True, exist_ok=True)
        (dest / ".cache" / "huggingface" / "download.lock").write_text("")


def test_hf_checkpoint_with_manifest(checkpoint: CheckpointInfo, tmp_path: Path) -> None:
    hub = FakeHub(checkpoint.path)
    (checkpoint.path / "README.md").write_text("not in the manifest: never downloaded")
    cache = tmp_path / "cache"
    fetched = fetch_checkpoint("hf://org/rec@v1", checkpoint.digest, hub_downloader=hub, cache_root=cache)
    assert fetched.path == cache / "hf" / checkpoint.digest.removeprefix("sha256:")
    assert hub.requested == [["manifest.json"], ["config.json", "model.safetensors", "sub/tokenizer.json"]]
    assert sorted(p.name for p in fetched.path.iterdir()) == [
        "config.json",
        "manifest.json",
        "model.safetensors",
        "sub",
    ]


def test_hf_wrong_digest_fails_before_weights_are_downloaded(checkpoint: CheckpointInfo, tmp_path: Path) -> None:
    hub = FakeHub(checkpoint.path)
    with pytest.raises(FetchError, match=r"digest mismatch.*the hub repository's manifest"):
        fetch_checkpoint("hf://org/rec", "sha256:" + "2" * 64, hub_downloader=hub, cache_root=tmp_path)
    assert hub.requested == [["manifest.json"]]


def test_hf_repository_without_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "model.safetensors").write_bytes(b"x")
    with pytest.raises(FetchError, match=r"the repository has no manifest\.json; hf:// must name a vlmr1 checkpoint"):
        fetch_checkpoint("hf://org/rec", "sha256:" + "3" * 64, hub_downloader=FakeHub(tmp_path / "repo"))


def test_hf_uri_forms() -> None:
    assert parse_hf_uri("hf://org/name") == ("org/name", None)
    assert parse_hf_uri("hf://org/name@refs/pr/1") == ("org/name", "refs/pr/1")
    with pytest.raises(FetchError, match="expected hf://<org>/<name>"):
        parse_hf_uri("hf://justname")


def _spec_file(tmp_path: Path, uri: str, digest: str) -> Path:
    spec = {
        "model": {"uri": uri, "digest": digest, "servedModelName": "m"},
        "engine": {"name": "transformers"},
        "resources": {"accelerator": "cpu", "devicesPerReplica": 0},
    }
    path = tmp_path / "vlmservice.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("damage", ["tamper", "wrong-digest", "no-manifest"])
def test_entry_point_exits_3_and_starts_no_engine(
    damage: str,
    checkpoint: CheckpointInfo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    started: list[Any] = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a))
    monkeypatch.setattr(entry, "start_adapter", lambda *a, **k: started.append(a))
    monkeypatch.setattr(entry.os, "execvpe", lambda *a: started.append(a))
    digest = checkpoint.digest
    if damage == "tamper":
        (checkpoint.path / "config.json").write_text("{}")
    elif damage == "wrong-digest":
        digest = "sha256:" + "4" * 64
    else:
        (checkpoint.path / "manifest.json").unlink()
    spec = _spec_file(tmp_path, str(checkpoint.path), digest)
    assert entry.main(["--spec", str(spec)]) == entry.EXIT_CHECKPOINT
    assert entry.main(["--spec", str(spec), "--no-metrics"]) == entry.EXIT_CHECKPOINT
    assert started == []
    err = capsys.readouterr().err
    assert err.startswith("vlmr1-serving: refusing to serve:")
    expected = {"tamper": "changed: config.json", "wrong-digest": "digest mismatch", "no-manifest": "no manifest.json"}
    assert expected[damage] in err


def test_entry_point_runs_the_engine_after_verification(
    checkpoint: CheckpointInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a verified checkpoint the engine argv carries the verified path; its exit code is ours."""
    seen: dict[str, Any] = {}

    class FakeProc:
        def __init__(self, argv: list[str], env: dict[str, str]) -> None:
            seen.update(argv=argv, env=env)

        def wait(self) -> int:
            return -15  # ended by SIGTERM

        def poll(self) -> int | None:
            return None

    monkeypatch.setattr(subprocess, "Popen", FakeProc)
    monkeypatch.setattr(entry, "start_adapter", lambda *a, **k: seen.update(adapter=(a, k)))
    spec = _spec_file(tmp_path, str(checkpoint.path), checkpoint.digest)
    assert entry.main(["--spec", str(spec), "--port", "8123", "--metrics-port", "9123"]) == 128 + 15
    argv = seen["argv"]
    assert argv[argv.index("--model") + 1] == str(checkpoint.path)
    assert argv[argv.index("--port") + 1] == "8123"
    assert seen["env"]["HF_HUB_OFFLINE"] == "1"
    (engine, url, port), options = seen["adapter"]
    assert (engine, url, port) == ("transformers", "http://127.0.0.1:8123/metrics", 9123)
    assert options["info"] == {"digest": checkpoint.digest, "engine": "transformers", "served_model_name": "m"}
    assert json.loads((checkpoint.path / "manifest.json").read_text())["step"] == 7


def test_engine_environment_layers(tmp_path: Path) -> None:
    """Ours, then the image's sourced toolkit variables, then the engine's own."""
    from vlmr1_serving.engines import Argv

    env_file = tmp_path / "engine-env.json"
    env_file.write_text(json.dumps({"LD_LIBRARY_PATH": "/usr/local/Ascend/lib64:/usr/lib", "ASCEND_HOME_PATH": "/a"}))
    argv = Argv(["xllm"], {"ASCEND_RT_VISIBLE_DEVICES": "0"})
    env = entry.engine_environment(argv, {"LD_LIBRARY_PATH": "/usr/lib", "HOME": "/h"}, str(env_file))
    assert env == {
        "LD_LIBRARY_PATH": "/usr/local/Ascend/lib64:/usr/lib",
        "ASCEND_HOME_PATH": "/a",
        "HOME": "/h",
        "ASCEND_RT_VISIBLE_DEVICES": "0",
    }
    assert entry.engine_environment(argv, {"HOME": "/h"}, None) == {"HOME": "/h", "ASCEND_RT_VISIBLE_DEVICES": "0"}
    env_file.write_text("[1]")
    with pytest.raises(entry.SpecError, match="expected a JSON object"):
        entry.engine_environment(argv, {}, str(env_file))
