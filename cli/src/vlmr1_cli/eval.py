"""`vlmr1 eval`: score a checkpoint or model on held-out data (vlmr1_trainer.commands.eval)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmr1_cli._lazy import lazy
from vlmr1_core.config import EVAL_METRICS


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint or model on VLM-R1 JSONL data (REC Acc@IoU0.5, COCO AP, math, GUI, "
        "multiple choice)",
        description="Greedy generation over each dataset (batched), then the task's metric with VLM-R1's "
        "evaluation semantics: rec_acc (IoU >= 0.5 of the first answer box, rescaled for Qwen2.5-VL; no box "
        "is wrong), ap/ap50 (COCO over the whole dataset), math_acc (verified correct), gui_acc (exact match), "
        "mcq_acc (the chosen letter). "
        "Writes OUTPUT/metrics.json and OUTPUT/<name>.samples.jsonl (prediction, parsed answer, score). "
        "A vlmr1 checkpoint is verified against its manifest and loaded as it trained (LoRA merged).",
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="DIR|URI",
        help="a checkpoint-<step> folder (local, pvc://, s3://) or a model uri (hf://org/name, builtin://...)",
    )
    p.add_argument(
        "--data",
        required=True,
        action="append",
        metavar="FILE.jsonl[:IMAGE_ROOT]",
        help="evaluation JSONL and the folder its image paths are relative to (default: the file's folder); "
        "repeat for several sets",
    )
    p.add_argument("--task", required=True, choices=list(EVAL_METRICS), help="the metric to compute")
    p.add_argument("--name", help="set name in metric names eval/<name>/... (default: the file name; one --data)")
    p.add_argument(
        "--family",
        choices=["qwen2.5-vl", "qwen3-vl", "qwen3.5", "glm4.1v", "internvl"],
        help="model family when the uri does not say",
    )
    p.add_argument("--batch-size", type=int, default=8, help="prompts per generation batch (default 8)")
    p.add_argument("--max-new-tokens", type=int, help="generation budget (default: the checkpoint's training one)")
    p.add_argument("--max-samples", type=int, help="score only the first N samples of each set")
    p.add_argument("--output", type=Path, help="results folder (default: evals/<checkpoint name>)")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--no-verify", action="store_true", help="do not check the checkpoint against its manifest")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=lazy("vlmr1_trainer.commands.eval:run", command="eval", extra="trainer"))
