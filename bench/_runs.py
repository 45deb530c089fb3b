"""Running a GRPOJob manifest with `vlmr1 run` into its own folder: what the learning benches share."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml


def run_job(doc: dict[str, Any], run_dir: Path) -> tuple[int, float]:
    """Write ``doc`` to RUN_DIR/job.yaml and train it fresh into RUN_DIR (log: RUN_DIR/run.log).
    Returns the exit code and the wall-clock seconds."""
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = run_dir / "job.yaml"
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    started = time.monotonic()
    with (run_dir / "run.log").open("w", encoding="utf-8") as log:
        code = subprocess.call(
            [sys.executable, "-m", "vlmr1_cli", "run", str(manifest), "--output", str(run_dir), "--no-resume"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return code, time.monotonic() - started


def run_job_or_exit(doc: dict[str, Any], run_dir: Path) -> float:
    """:func:`run_job`, stopping the bench with the log's path when the run fails; returns seconds."""
    code, seconds = run_job(doc, run_dir)
    if code != 0:
        raise SystemExit(f"{run_dir.name}: vlmr1 run failed (exit {code}); see {run_dir / 'run.log'}")
    return seconds
