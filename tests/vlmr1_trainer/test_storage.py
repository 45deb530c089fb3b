"""Model uris as from_pretrained arguments: local folders, pvc and s3 folders, hub ids, builtins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vlmr1_core.uri import COMPLETE_MARKER, StorageError
from vlmr1_trainer.storage import ModelSource, resolve_model


def test_local_paths_are_used_as_they_are(tmp_path: Path) -> None:
    model = tmp_path / "my-model"
    model.mkdir()
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
    monkeypatch.setenv("VLMR1_PVC_ROOT", "/volumes")
    source = resolve_model("pvc://models/qwen", revision="main")
    assert source == ModelSource(uri="pvc://models/qwen", pretrained="/volumes/models/qwen", kind="pvc")


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


def test_s3_prefix_is_downloaded_as_a_folder_for_from_pretrained(tmp_path: Path, fake_s3: Any) -> None:
    fake = fake_s3({"runs/a/config.json": b"{}", "runs/a/weights/model.safetensors": b"w", "runs/ab": b"x"})
    source = resolve_model("s3://models/runs/a/", downloader=fake, cache_root=tmp_path)
    folder = Path(source.pretrained)
    assert source.kind == "s3" and folder == tmp_path / "s3" / "models" / "runs" / "a"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "config.json",
        "weights/model.safetensors",
    ]
    assert (folder.parent / f"a{COMPLETE_MARKER}").exists()


def test_builtin_uri_builds_into_the_cache(tmp_path: Path) -> None:
    source = resolve_model("builtin://tiny-internvl", cache_root=tmp_path, builtin_seed=1)
    assert source.kind == "builtin" and source.is_local
    assert source.pretrained == str(tmp_path / "builtin" / "tiny-internvl-seed1")
    assert (Path(source.pretrained) / "config.json").exists()
