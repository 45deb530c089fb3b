"""`vlmr1 promote --require` with gates measured after training: `vlmr1 eval` results
(in-process, through an endpoint, or from saved predictions) passed with --eval-results."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vlmr1_cli import main
from vlmr1_core.checkpoints import CheckpointInfo

EVAL = "eval/refcoco-val/rec_acc"


def record(folder: Path, digest: str | None, metrics: dict[str, Any], source: dict[str, Any]) -> Path:
    """A results folder as `vlmr1 eval --output` writes it."""
    folder.mkdir(parents=True)
    body = {"checkpoint": "x", "digest": digest, "step": 2, "source": source, "metrics": metrics, "datasets": {}}
    (folder / "metrics.json").write_text(json.dumps(body))
    return folder


ENDPOINT = {"kind": "endpoint", "endpoint": "http://rec-dev.ml.svc:8000/v1", "model": "rec-dev"}


@pytest.fixture
def promote_args(
    make_repo: Callable[..., Path], make_run: Callable[..., dict[int, CheckpointInfo]], run_metrics: Any, tmp_path: Path
) -> tuple[list[str], dict[int, CheckpointInfo]]:
    service = make_repo()
    infos = make_run(run_metrics)
    args = ["promote", "--run-dir", str(tmp_path / "runs" / "rec"), "--service", str(service), "--select", "step=2",
            "--dry-run"]  # fmt: skip
    return args, infos


def test_gates_measured_through_an_endpoint_count(
    promote_args: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, infos = promote_args
    served = record(tmp_path / "served", infos[2].digest, {"eval/served/rec_acc": 0.9}, ENDPOINT)
    assert main([*args, "--require", "eval/served/rec_acc>=0.85"]) == 2  # not in the manifest
    assert "the checkpoint has no metric 'eval/served/rec_acc'" in capsys.readouterr().err
    assert main([*args, "--require", "eval/served/rec_acc>=0.85", "--eval-results", str(served)]) == 0
    assert "gate passed: eval/served/rec_acc = 0.9, required >= 0.85" in capsys.readouterr().out
    # A record's value replaces the manifest's for the same name: step 2 trained to 0.62.
    file = record(tmp_path / "again", infos[2].digest, {EVAL: 0.87}, {"kind": "predictions", "files": {}})
    assert main([*args, "--require", "rec_acc>=0.85", "--eval-results", str(file / "metrics.json")]) == 0
    assert f"gate passed: rec_acc ({EVAL}) = 0.87" in capsys.readouterr().out


def test_results_of_another_checkpoint_or_of_none_are_refused(
    promote_args: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, infos = promote_args
    other = record(tmp_path / "other", infos[4].digest, {"eval/served/rec_acc": 0.9}, ENDPOINT)
    assert main([*args, "--require", "eval/served/rec_acc>=0.85", "--eval-results", str(other)]) == 2
    err = capsys.readouterr().err
    assert f"measured checkpoint {infos[4].digest}, not the one being promoted ({infos[2].digest})" in err
    anonymous = record(tmp_path / "anon", None, {"eval/served/rec_acc": 0.9}, ENDPOINT)
    assert main([*args, "--require", "eval/served/rec_acc>=0.85", "--eval-results", str(anonymous)]) == 2
    err = capsys.readouterr().err
    assert "records no checkpoint digest (measured through endpoint http://rec-dev.ml.svc:8000/v1" in err
    assert "rerun `vlmr1 eval` with --checkpoint" in err
    assert main([*args, "--eval-results", str(tmp_path / "missing")]) == 2
    assert "cannot read" in capsys.readouterr().err
