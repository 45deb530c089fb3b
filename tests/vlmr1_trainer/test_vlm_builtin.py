"""Builtin tiny models: deterministic, cached, rebuilt when stale, never half-built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlmr1_core.checkpoints import sha256_file
from vlmr1_trainer.vlm import builtin
from vlmr1_trainer.vlm.builtin import MARKER, build_builtin, builtin_dir, ensure_builtin


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}


def test_build_is_deterministic_given_the_seed(tmp_path: Path) -> None:
    build_builtin("tiny-internvl", tmp_path / "a", seed=3)
    build_builtin("tiny-internvl", tmp_path / "b", seed=3)
    build_builtin("tiny-internvl", tmp_path / "c", seed=4)
    a, b, c = (_hashes(tmp_path / x) for x in "abc")
    assert a == b
    assert a["model.safetensors"] != c["model.safetensors"]
    assert a["tokenizer.json"] == c["tokenizer.json"]
    assert {"config.json", "model.safetensors", "processor_config.json", "tokenizer.json", MARKER} <= set(a)


def test_ensure_builtin_caches_and_names_seeded_builds(tmp_path: Path) -> None:
    first = ensure_builtin("tiny-qwen2.5-vl", cache_root=tmp_path)
    assert first == tmp_path / "builtin" / "tiny-qwen2.5-vl"
    weights = first / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert ensure_builtin("tiny-qwen2.5-vl", cache_root=tmp_path) == first
    assert weights.stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert builtin_dir("tiny-qwen2.5-vl", cache_root=tmp_path, seed=7).name == "tiny-qwen2.5-vl-seed7"
    assert [p.name for p in (tmp_path / "builtin").iterdir()] == ["tiny-qwen2.5-vl"]  # no staging left


def test_cache_dir_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLMR1_CACHE_DIR", str(tmp_path / "cache"))
    assert builtin_dir("tiny-internvl") == tmp_path / "cache" / "builtin" / "tiny-internvl"


def test_stale_recipe_is_rebuilt(tmp_path: Path) -> None:
    path = ensure_builtin("tiny-internvl", cache_root=tmp_path)
    marker = json.loads((path / MARKER).read_text())
    (path / MARKER).write_text(json.dumps({**marker, "recipe": marker["recipe"] - 1}))
    (path / "leftover.txt").write_text("from an older recipe")
    assert ensure_builtin("tiny-internvl", cache_root=tmp_path) == path
    assert json.loads((path / MARKER).read_text()) == marker
    assert not (path / "leftover.txt").exists()


def test_crash_while_building_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(dest: Path) -> None:
        (dest / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setitem(builtin.BUILTIN_MODELS, "tiny-internvl", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_builtin("tiny-internvl", cache_root=tmp_path)
    assert list((tmp_path / "builtin").iterdir()) == []


def test_unknown_builtin_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"builtin://tiny-internvl, builtin://tiny-qwen2\.5-vl"):
        ensure_builtin("tiny-llava", cache_root=tmp_path)


def test_colour_warm_start_is_deterministic_and_partly_trained(tmp_path: Path) -> None:
    from vlmr1_trainer.vlm.builtin_colour import TARGET_ACCURACY, TRAINING_FILE

    build_builtin("tiny-qwen2.5-vl-colour", tmp_path / "a")
    build_builtin("tiny-qwen2.5-vl-colour", tmp_path / "b")
    a, b = _hashes(tmp_path / "a"), _hashes(tmp_path / "b")
    assert a == b
    # The same tokenizer as the random tiny model of the family: a fine-tune, not a new model.
    build_builtin("tiny-qwen2.5-vl", tmp_path / "random")
    assert a["tokenizer.json"] == _hashes(tmp_path / "random")["tokenizer.json"]
    assert a["model.safetensors"] != _hashes(tmp_path / "random")["model.safetensors"]
    record = json.loads((tmp_path / "a" / TRAINING_FILE).read_text())
    # It stopped at the first check that reached the target, well before knowing every colour.
    assert record["check_accuracy"] >= TARGET_ACCURACY
    assert all(accuracy < TARGET_ACCURACY for _, accuracy in record["checks"][:-1])
    assert record["check_accuracy"] < 0.9
