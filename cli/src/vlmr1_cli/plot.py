"""`vlmr1 plot RUN_DIR`: redraw a run's reward_curve.png from its metrics.jsonl (vlmr1_trainer.commands.plot)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmr1_cli._lazy import lazy


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "plot",
        help="draw a run's reward curve (each reward's mean per step, KL, evaluation metrics) as a PNG",
        description="Reads RUN_DIR/metrics.jsonl (a local run's folder, or a pod's output folder) and draws "
        "each reward's mean per step, the KL when the run has one, and every evaluation metric per "
        "checkpoint (step 0: the starting model, with evaluation.onStart). `vlmr1 run` draws the same "
        "picture into RUN_DIR/reward_curve.png when it finishes.",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run folder holding metrics.jsonl")
    p.add_argument("--output", type=Path, help="the PNG to write (default: RUN_DIR/reward_curve.png)")
    p.set_defaults(handler=lazy("vlmr1_trainer.commands.plot:run", command="plot", extra="trainer"))
