"""`vlmr1 run FILE.yaml`: train a GRPOJob on this machine (the trainer does it; see vlmr1_trainer.commands.run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmr1_cli._lazy import lazy


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run",
        help="train a GRPOJob YAML locally (no cluster), with a progress line and a summary",
        description="Run a GRPOJob on this machine: in-process, or as --nnodes x --nproc-per-node processes "
        "with the same environment the operator gives pods. Checkpoints go to DIR/checkpoints, metrics to "
        "DIR/metrics.jsonl; a second run in the same DIR resumes from the newest verified checkpoint.",
    )
    p.add_argument("file", type=Path, metavar="FILE.yaml", help="a GRPOJob manifest")
    p.add_argument("--output", type=Path, help="run folder (default: runs/<job name>)")
    p.add_argument("--max-steps", type=int, help="stop after this many steps (overrides training.maxSteps)")
    p.add_argument("--nnodes", type=int, default=1, help="node processes to start (default 1)")
    p.add_argument("--nproc-per-node", type=int, default=1, help="training processes per node (default 1)")
    p.add_argument("--no-resume", action="store_true", help="start fresh even if DIR has checkpoints")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port (0: any free port)")
    p.add_argument(
        "--dump-completions",
        action="store_true",
        help="dump sampled completions with their rewards to DIR/completions.jsonl (VLM-R1's DEBUG_MODE)",
    )
    p.set_defaults(handler=lazy("vlmr1_trainer.commands.run:run", command="run", extra="trainer"))
