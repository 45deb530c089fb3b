"""Uri resolution: local paths, pvc:// mounts, s3:// downloads (fake downloader), hub ids."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from vlmr1_trainer.storage import (
    COMPLETE_MARKER,
    ModelSource,
    StorageError,
    boto3_download,
    resolve_local_path,
    resolve_model,
)


class FakeS3:
    """A downloader over an in-memory bucket: ``{key: bytes}``."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.calls: list[tuple[str, str]] = []

    def __call__(self, bucket: str, key: str, dest: Path) -> None:
        self.calls.append((bucket, key))
        if key in self.objects:
            dest.write_bytes(self.objects[key])
            return
        for name, data in self.objects.items():
            if name.startswith(key + "/"):
                target = dest / name[len(key) + 1 :]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)


def test_local_paths_are_used_as_they_are(tmp_path: Path) -> None:
    model = tmp_path / "my-model"
    model.mkdir()
    assert resolve_local_path(str(model)) == model
    assert resolve_model(str(model)) == ModelSource(uri=str(model), pretrained=str(model), kind="local")
    # A path that looks like one stays a path even when missing (from_pretrained reports it).
    assert resolve_model("./models/x").kind == "local"
    assert resolve_model("/does/not/exist").pretrained == "/does/not/exist"


def test_relative_existing_folder_wins_over_a_hub_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "org" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert resolve_model("org/name").kind == "local"


def test_pvc_uris_name_the_mount(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLMR1_PVC_ROOT", raising=False)
    assert resolve_local_path("pvc://models/qwen/7b") == Path("/mnt/pvc/models/qwen/7b")
    assert resolve_local_path("pvc://data") == Path("/mnt/pvc/data")
    monkeypatch.setenv("VLMR1_PVC_ROOT", "/volumes")
    source = resolve_model("pvc://models/qwen", revision="main")
    assert source == ModelSource(uri="pvc://models/qwen", pretrained="/volumes/models/qwen", kind="pvc")
    with pytest.raises(StorageError, match=r"without '\.\.'"):
        resolve_local_path("pvc://models/../../etc")


def test_hub_ids_go_to_from_pretrained_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    hf = resolve_model("hf://Qwen/Qwen2.5-VL-3B-Instruct", revision="abc123")
    assert (hf.pretrained, hf.kind, hf.revision, hf.is_local) == ("Qwen/Qwen2.5-VL-3B-Instruct", "hub", "abc123", False)
    bare = resolve_model("OpenGVLab/InternVL3-1B-hf")
    assert (bare.pretrained, bare.kind, bare.revision) == ("OpenGVLab/InternVL3-1B-hf", "hub", None)
    with pytest.raises(StorageError, match="hf://<org>/<name>"):
        resolve_model("hf://not a repo")
    with pytest.raises(StorageError, match="unknown scheme"):
        resolve_model("gs://bucket/model")


def test_family_load_model_passes_the_resolved_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    from vlmr1_trainer.vlm import get_family

    calls: list[tuple[str, dict[str, Any]]] = []

    class FakeModelClass:
        @classmethod
        def from_pretrained(cls, pretrained: str, **kwargs: Any) -> str:
            calls.append((pretrained, kwargs))
            return "model"

    family = get_family("qwen2.5-vl")
    monkeypatch.setattr(family, "model_class", lambda: FakeModelClass)
    loaded: object = family.load_model("hf://Qwen/Qwen2.5-VL-3B-Instruct", revision="v1", attn_implementation="sdpa")
    assert loaded == "model"
    family.load_model("Qwen/Qwen2.5-VL-7B-Instruct", dtype="bfloat16")
    assert calls == [
        ("Qwen/Qwen2.5-VL-3B-Instruct", {"revision": "v1", "attn_implementation": "sdpa"}),
        ("Qwen/Qwen2.5-VL-7B-Instruct", {"dtype": "bfloat16"}),
    ]


def test_s3_object_is_downloaded_once(tmp_path: Path) -> None:
    fake = FakeS3({"train/rec.jsonl": b'{"id": 1}\n'})
    path = resolve_local_path("s3://data/train/rec.jsonl", downloader=fake, cache_root=tmp_path)
    assert path == tmp_path / "s3" / "data" / "train" / "rec.jsonl"
    assert path.read_bytes() == b'{"id": 1}\n'
    assert resolve_local_path("s3://data/train/rec.jsonl", downloader=fake, cache_root=tmp_path) == path
    assert fake.calls == [("data", "train/rec.jsonl")]


def test_s3_prefix_is_downloaded_as_a_folder_for_from_pretrained(tmp_path: Path) -> None:
    fake = FakeS3({"runs/a/config.json": b"{}", "runs/a/weights/model.safetensors": b"w", "runs/ab": b"x"})
    source = resolve_model("s3://models/runs/a/", downloader=fake, cache_root=tmp_path)
    folder = Path(source.pretrained)
    assert source.kind == "s3" and folder == tmp_path / "s3" / "models" / "runs" / "a"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "config.json",
        "weights/model.safetensors",
    ]
    assert (folder.parent / f"a{COMPLETE_MARKER}").exists()


def test_failed_s3_download_leaves_nothing_and_retries(tmp_path: Path) -> None:
    def flaky(bucket: str, key: str, dest: Path) -> None:
        dest.write_bytes(b"half")
        raise ConnectionError("reset by peer")

    with pytest.raises(ConnectionError):
        resolve_local_path("s3://data/x.jsonl", downloader=flaky, cache_root=tmp_path)
    assert [p.name for p in (tmp_path / "s3" / "data").iterdir()] == []
    with pytest.raises(StorageError, match="no object or prefix"):
        resolve_local_path("s3://data/x.jsonl", downloader=FakeS3({}), cache_root=tmp_path)
    fake = FakeS3({"x.jsonl": b"ok"})
    assert resolve_local_path("s3://data/x.jsonl", downloader=fake, cache_root=tmp_path).read_bytes() == b"ok"


def test_s3_uri_shape_is_checked(tmp_path: Path) -> None:
    for bad in ("s3://bucket", "s3://bucket/", "s3://bucket/a/../b"):
        with pytest.raises(StorageError, match="s3://<bucket>"):
            resolve_local_path(bad, downloader=FakeS3({}), cache_root=tmp_path)


def test_without_boto3_the_error_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # makes `import boto3` raise ImportError
    with pytest.raises(StorageError, match="pip install boto3"):
        boto3_download("bucket", "key", tmp_path / "dest")
    with pytest.raises(StorageError, match="pip install boto3"):
        resolve_local_path("s3://bucket/key", cache_root=tmp_path)


def test_builtin_uri_builds_into_the_cache(tmp_path: Path) -> None:
    source = resolve_model("builtin://tiny-internvl", cache_root=tmp_path, builtin_seed=1)
    assert source.kind == "builtin" and source.is_local
    assert source.pretrained == str(tmp_path / "builtin" / "tiny-internvl-seed1")
    assert (Path(source.pretrained) / "config.json").exists()
