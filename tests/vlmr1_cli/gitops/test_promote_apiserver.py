"""``vlmr1 promote --job`` against a real API server: the GRPOJob's status is read with a kubeconfig."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vlmr1_cli import main
from vlmr1_core.checkpoints import CheckpointInfo

REPO = Path(__file__).resolve().parents[3]
JOB = "rec-shapes-tiny-local"
PREFIX = "pvc://vlmr1-checkpoints/rec/checkpoints"

pytestmark = pytest.mark.apiserver


def test_promote_a_job_read_from_the_api_server(
    control_plane: Any,
    make_repo: Callable[..., Path],
    make_run: Callable[..., dict[int, CheckpointInfo]],
    run_metrics: dict[int, dict[str, Any]],
    tmp_path: Path,
    git: Callable[..., str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    pvc = tmp_path / "pvc"
    infos = make_run(run_metrics, root=pvc / "vlmr1-checkpoints" / "rec")
    control_plane.kubectl("create", "namespace", "promote", check=False)
    control_plane.kubectl("apply", "-n", "promote", "-f", str(REPO / "examples" / "grpojob-rec-local.yaml"))
    checkpoints = [
        {"uri": f"{PREFIX}/checkpoint-{s}", "step": s, "digest": i.digest, "metrics": i.metrics, "best": s == 4}
        for s, i in sorted(infos.items())
    ]
    status = {"status": {"phase": "Succeeded", "checkpoints": checkpoints, "bestCheckpoint": checkpoints[1]}}
    control_plane.kubectl(
        "patch", "grpojob", JOB, "-n", "promote", "--subresource=status", "--type=merge", "-p", json.dumps(status)
    )
    service = make_repo()
    code = main(
        [
            "promote",
            "--job",
            JOB,
            "-n",
            "promote",
            "--kubeconfig",
            str(control_plane.kubeconfig),
            "--pvc-root",
            str(pvc),
            "--service",
            str(service),
            "--require",
            "rec_acc>=0.85",
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    branch = f"promote/rec-dev/{JOB}-step-4"
    assert git(service.parents[1], "branch", "--show-current").strip() == branch
    message = git(service.parents[1], "log", "-1", "--format=%B")
    assert f"Job: GRPOJob promote/{JOB}" in message and f"Digest: {infos[4].digest}" in message
    assert (
        main(
            [
                "promote",
                "--job",
                "missing",
                "-n",
                "promote",
                "--kubeconfig",
                str(control_plane.kubeconfig),
                "--service",
                str(service),
            ]
        )
        == 2  # refused: a user error
    )
    assert "GRPOJob promote/missing not found" in capsys.readouterr().err
