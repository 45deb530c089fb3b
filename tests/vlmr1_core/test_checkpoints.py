"""Checkpoints: atomic save, manifest verification, resume choice, pruning, the CLI."""

from __future__ import annotations

import argparse
import doctest
import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from vlmr1_cli import checkpoints as cli_checkpoints
from vlmr1_core import checkpoints
from vlmr1_core.checkpoints import (
    MANIFEST,
    CheckpointInfo,
    Selector,
    checkpoint_dirs,
    checkpoint_name,
    find_resumable,
    prune,
    save_checkpoint,
    select_checkpoint,
    selector,
    step_of,
    verify_checkpoint,
)
from vlmr1_core.config import TrainerConfig

CONFIG = TrainerConfig.model_validate(
    {
        "model": {"uri": "builtin://tiny-qwen2.5-vl"},
        "datasets": [{"jsonl": "data/rec.jsonl"}],
        "training": {"maxSteps": 3},
    }
)


def _writer(payload: bytes = b"weights") -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        (tmp / "model.safetensors").write_bytes(payload)
        (tmp / "optimizer").mkdir()
        (tmp / "optimizer" / "state.pt").write_bytes(b"adam")

    return write


def _save(root: Path, step: int, reward: float | None = None) -> CheckpointInfo:
    metrics = {"reward": reward} if reward is not None else {}
    return save_checkpoint(root, step, _writer(f"w{step}".encode()), metrics, CONFIG)


def test_save_writes_a_manifest_whose_hash_is_the_digest(tmp_path: Path) -> None:
    info = save_checkpoint(tmp_path, 10, _writer(), {"reward": 0.5, "kl": float("nan")}, CONFIG, uri="pvc://ckpt/run1/")
    assert info.path == tmp_path / "checkpoint-10" and info.step == 10
    assert info.uri == "pvc://ckpt/run1/checkpoint-10"
    raw = (info.path / MANIFEST).read_bytes()
    assert info.digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    manifest = json.loads(raw)
    assert manifest["step"] == 10
    assert manifest["metrics"] == {"reward": 0.5, "kl": None} == info.metrics
    assert manifest["files"] == {
        "model.safetensors": {"sha256": hashlib.sha256(b"weights").hexdigest(), "size": 7},
        "optimizer/state.pt": {"sha256": hashlib.sha256(b"adam").hexdigest(), "size": 4},
    }
    assert manifest["config"] == CONFIG.model_dump(mode="json", by_alias=True)
    assert manifest["config"]["training"]["maxSteps"] == 3  # camelCase, as in the GRPOJob
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10"]


def test_digest_is_stable_across_reverification(tmp_path: Path) -> None:
    info = _save(tmp_path, 1, 0.1)
    first, second = verify_checkpoint(info.path), verify_checkpoint(info.path)
    assert first.ok and second.ok
    assert first.digest == second.digest == info.digest
    assert first.step == 1 and first.metrics == {"reward": 0.1}


def test_crash_while_writing_leaves_no_checkpoint(tmp_path: Path) -> None:
    _save(tmp_path, 1)

    def crash(tmp: Path) -> None:
        (tmp / "model.safetensors").write_bytes(b"half a model")
        raise OSError("node lost")

    with pytest.raises(OSError, match="node lost"):
        save_checkpoint(tmp_path, 2, crash, {"reward": 1.0}, CONFIG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-1"]
    resumable = find_resumable(tmp_path)
    assert resumable is not None and resumable.step == 1


def test_writer_may_not_write_the_manifest(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path, 1, lambda tmp: (tmp / MANIFEST).write_text("{}"))
    assert list(tmp_path.iterdir()) == []


def test_resaving_a_step_replaces_it_whole(tmp_path: Path) -> None:
    old = save_checkpoint(tmp_path, 5, lambda tmp: (tmp / "old.bin").write_bytes(b"1"))
    new = save_checkpoint(tmp_path, 5, lambda tmp: (tmp / "new.bin").write_bytes(b"2"))
    assert old.digest != new.digest
    assert sorted(p.name for p in new.path.iterdir()) == [MANIFEST, "new.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-5"]


@pytest.mark.parametrize("damage", ["changed", "missing", "extra"])
def test_damaged_checkpoint_is_refused_and_skipped(tmp_path: Path, damage: str) -> None:
    _save(tmp_path, 1)
    newest = _save(tmp_path, 2).path
    if damage == "changed":
        (newest / "optimizer" / "state.pt").write_bytes(b"sgd!")
    elif damage == "missing":
        (newest / "model.safetensors").unlink()
    else:
        (newest / "notes.txt").write_text("added later")
    result = verify_checkpoint(newest)
    assert not result.ok
    expected = {"changed": "optimizer/state.pt", "missing": "model.safetensors", "extra": "notes.txt"}[damage]
    assert getattr(result, damage) == [expected]
    assert result.problems() == [f"{damage}: {expected}"]
    resumable = find_resumable(tmp_path)
    assert resumable is not None and resumable.step == 1


def test_every_problem_is_listed(tmp_path: Path) -> None:
    path = _save(tmp_path, 3).path
    (path / "model.safetensors").unlink()
    (path / "optimizer" / "state.pt").write_bytes(b"x")
    (path / "extra.bin").write_bytes(b"y")
    assert verify_checkpoint(path).problems() == [
        "missing: model.safetensors",
        "changed: optimizer/state.pt",
        "extra: extra.bin",
    ]


def test_folders_without_a_valid_manifest_are_not_resumable(tmp_path: Path) -> None:
    (tmp_path / "checkpoint-9").mkdir()  # e.g. written by something else, or half copied
    (tmp_path / "checkpoint-8").mkdir()
    (tmp_path / "checkpoint-8" / MANIFEST).write_text("{not json")
    moved = _save(tmp_path, 4).path.rename(tmp_path / "checkpoint-7")  # a renamed folder
    assert [s for s, _ in checkpoint_dirs(tmp_path)] == [9, 8, 7]
    assert verify_checkpoint(tmp_path / "checkpoint-9").errors[0].startswith(f"no {MANIFEST}")
    assert "not valid JSON" in verify_checkpoint(tmp_path / "checkpoint-8").errors[0]
    assert verify_checkpoint(moved).errors == ["folder checkpoint-7 holds the manifest of step 4"]
    assert find_resumable(tmp_path) is None
    assert find_resumable(tmp_path / "absent") is None


def test_prune_keeps_newest_and_the_best(tmp_path: Path) -> None:
    for step, reward in [(1, 0.2), (2, 0.9), (3, 0.1), (4, 0.3), (5, 0.4)]:
        _save(tmp_path, step, reward)
    (tmp_path / ".tmp-checkpoint-6-abc").mkdir()  # left by a crashed save
    removed = prune(tmp_path, keep=2)
    assert sorted(p.name for p in removed) == ["checkpoint-1", "checkpoint-3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-4", "checkpoint-5"]


def test_prune_with_a_declared_metric_and_direction(tmp_path: Path) -> None:
    for step, loss in [(1, 0.5), (2, 0.1), (3, 0.7), (4, math.inf)]:
        save_checkpoint(tmp_path, step, _writer(), {"loss": loss})
    prune(tmp_path, keep=1, best_metric="loss", greater_is_better=False)
    assert [s for s, _ in checkpoint_dirs(tmp_path)] == [4, 2]
    prune(tmp_path, keep=1, best_metric=None)
    assert [s for s, _ in checkpoint_dirs(tmp_path)] == [4]
    with pytest.raises(ValueError, match="keep must be"):
        prune(tmp_path, keep=0)


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="vlmr1")
    cli_checkpoints.register(parser.add_subparsers(required=True))
    args = parser.parse_args(list(argv))
    code: int = args.handler(args)
    return code


def test_cli_verify_prints_the_digest_or_the_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    info = _save(tmp_path, 2, 0.5)
    assert _cli("checkpoints", "verify", str(info.path)) == 0
    assert capsys.readouterr().out.strip() == info.digest
    (info.path / "model.safetensors").write_bytes(b"tampered")
    (info.path / "optimizer" / "state.pt").unlink()
    assert _cli("checkpoints", "verify", str(info.path)) == 1
    err = capsys.readouterr().err
    assert "changed: model.safetensors" in err and "missing: optimizer/state.pt" in err


def test_cli_pin_pins_a_downloaded_model_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "VLM-R1-Qwen2.5VL-3B-OVD-0321"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "sub" / "tokenizer.json").write_text("{}")
    (model / ".manifest.json.partial").write_text("left by an interrupted pin")
    assert _cli("checkpoints", "pin", str(model)) == 0
    digest = capsys.readouterr().out.strip()
    assert digest == checkpoints.manifest_digest((model / "manifest.json").read_bytes())
    result = verify_checkpoint(model)
    assert result.ok and result.digest == digest
    manifest = json.loads((model / "manifest.json").read_bytes())
    assert sorted(manifest["files"]) == ["config.json", "model.safetensors", "sub/tokenizer.json"]
    assert manifest["files"]["model.safetensors"]["sha256"] == hashlib.sha256(b"weights").hexdigest()
    # Pinning again changes nothing and prints the same digest; a changed file is refused.
    assert _cli("checkpoints", "pin", str(model)) == 0
    assert capsys.readouterr().out.strip() == digest
    (model / "model.safetensors").write_bytes(b"other weights")
    assert _cli("checkpoints", "pin", str(model)) == 1
    assert "changed: model.safetensors" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _cli("checkpoints", "pin", str(empty)) == 1
    assert "no files to pin" in capsys.readouterr().err


def test_cli_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _save(tmp_path, 1, 0.25)
    bad = _save(tmp_path, 2, 0.5)
    assert _cli("checkpoints", "list", str(tmp_path)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("checkpoint-2\tstep=2\tok\t" + bad.digest)
    assert lines[1] == f"checkpoint-1\tstep=1\tok\t{good.digest}\treward=0.25"
    (bad.path / "model.safetensors").unlink()
    assert _cli("checkpoints", "list", "--json", str(tmp_path)) == 1
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["step"], r["status"], r["problems"]) for r in records] == [
        (2, "BROKEN", ["missing: model.safetensors"]),
        (1, "ok", []),
    ]
    assert _cli("checkpoints", "list", "--no-verify", str(tmp_path)) == 0
    assert "\tunverified\t" in capsys.readouterr().out


# --- Selecting a checkpoint: the rule `vlmr1 promote` and a VLMService's fromJob share ------------

STEPS = [(6, {"reward": 0.7, "loss": 0.1}), (2, {"reward": 0.4, "loss": 0.3}), (4, {"reward": 0.7})]


@pytest.mark.parametrize(
    ("which", "options", "step"),
    [
        ("latest", {}, 6),
        (4, {}, 4),
        (5, {}, None),
        ("best", {}, 6),  # a tie goes to the higher step
        ("best", {"best_metric": "loss", "greater_is_better": False}, 6),
        ("best", {"best_metric": "loss"}, 2),
        ("best", {"marked_best": 2}, 2),  # what the source marked wins
        ("best", {"marked_best": 8}, 6),  # unless it is not among the candidates
        ("best", {"best_metric": "eval/x/acc"}, None),  # no candidate has the metric: none is best
    ],
)
def test_select_checkpoint(which: Selector, options: dict[str, object], step: int | None) -> None:
    index = select_checkpoint(STEPS, which, **options)  # type: ignore[arg-type]
    assert (STEPS[index][0] if index is not None else None) == step


def test_select_from_nothing() -> None:
    assert select_checkpoint([], "latest") is None
    assert select_checkpoint([], "best") is None


def test_selector_reads_a_fromjob_reference() -> None:
    assert [selector(t) for t in ("best", "latest", "40", " 0 ")] == ["best", "latest", 40, 0]
    for bad in ("", "newest", "step=4", "-1"):
        with pytest.raises(ValueError, match="not best, latest or a step number"):
            selector(bad)


@pytest.mark.parametrize(
    ("name", "step"),
    [
        ("checkpoint-0", 0),
        ("checkpoint-12", 12),
        ("checkpoint-", None),
        ("checkpoint-12b", None),
        ("checkpoint--1", None),
        (".tmp-checkpoint-3-abc", None),
        ("Checkpoint-3", None),
        ("checkpoints", None),
    ],
)
def test_a_checkpoint_name_carries_its_step_and_nothing_else_does(name: str, step: int | None) -> None:
    assert step_of(name) == step
    if step is not None:
        assert checkpoint_name(step) == name


def test_doctests() -> None:
    result = doctest.testmod(checkpoints)
    assert result.attempted >= 5 and result.failed == 0
