"""The README's first command learns: GRPO raises the task reward and held-out accuracy.

This is the end-to-end check that prompts, answer format, reward columns and the advantage
sign are wired right: any of them broken and the gains below vanish while every unit test
stays green. It runs the README's job exactly as a user does (about two minutes on 2 cores).
The thresholds are the issue's goal for the README run, not numbers read off one run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from vlmr1_trainer.progress.curve import CURVE_FILE, read_run

REPO = Path(__file__).resolve().parents[2]
JOB = REPO / "examples" / "grpojob-colour-local.yaml"
METRIC = "eval/colour-shapes-val/mcq_acc"
GAIN = 0.25


def test_readme_job_raises_reward_and_held_out_accuracy(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "vlmr1_cli", "run", str(JOB), "--output", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    curves = read_run(run_dir)
    first, last, gain = curves.gains()["mcq"]
    assert gain >= GAIN, f"mcq reward {first:.3f} -> {last:.3f} (first vs last quarter of steps)"
    points = curves.evaluations[METRIC]
    (start_step, start), (first_step, first_checkpoint), (final_step, final) = points[0], points[1], points[-1]
    assert start_step == 0 and first_step > 0 and final_step == 480, points
    assert final - start >= GAIN, f"held-out accuracy {start:.3f} (starting model) -> {final:.3f}: {points}"
    assert final - first_checkpoint >= GAIN, (
        f"held-out accuracy {first_checkpoint:.3f} (first checkpoint) -> {final:.3f}"
    )
    # The summary shows the rise and where the picture is.
    assert f"mcq:         {first:.3f} -> {last:.3f}" in result.stdout
    assert f"{METRIC}: step 0: {start:.3f}" in result.stdout
    assert f"curve:       {run_dir / CURVE_FILE}" in result.stdout
    assert (run_dir / CURVE_FILE).read_bytes().startswith(b"\x89PNG")
