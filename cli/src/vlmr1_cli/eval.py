"""`vlmr1 eval`: score a checkpoint or model on held-out data (vlmr1_trainer.commands.eval)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmr1_cli._lazy import lazy
from vlmr1_core.config import EVAL_METRICS


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint, a served model or saved predictions on VLM-R1 JSONL data (REC Acc@IoU0.5, "
        "COCO AP, math, GUI, multiple choice)",
        description="Predictions from one source: the model loaded in-process (--checkpoint; batched greedy "
        "generation), an OpenAI-compatible endpoint (--endpoint; greedy, the same prompts and images), or a "
        "saved predictions file per --data (--predictions; no model loaded). Then the task's metrics with "
        "VLM-R1's evaluation semantics: rec_acc (src/eval/test_rec_r1.py: the box between { and } in the "
        "first answer block, rescaled as the family needs, IoU > 0.5) and rec_acc_reward (the training reward's "
        "reading), ap/ap50 (COCO over the whole dataset) and od_acc (src/eval/test_od_r1.py, single-box "
        "samples), math_acc (verified correct), gui_acc (exact match), mcq_acc (the chosen letter). "
        "Writes OUTPUT/metrics.json (metrics, and what produced the predictions) and OUTPUT/<name>.samples.jsonl "
        "(prediction, parsed answer, score). A vlmr1 checkpoint is verified against its manifest and loaded as "
        "it trained (LoRA merged); with --endpoint or --predictions only its processor is loaded.",
    )
    p.add_argument(
        "--checkpoint",
        metavar="DIR|URI",
        help="a checkpoint-<step> folder (local, pvc://, s3://) or a model uri (hf://org/name, builtin://...): "
        "the model to evaluate; with --endpoint/--predictions, the one that produced the predictions (its "
        "processor, box convention and digest; weights not loaded)",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--endpoint",
        metavar="URL",
        help="generate through this OpenAI-compatible endpoint (vLLM, xllm, vllm-ascend, the CPU dev engine; a "
        "VLMService's status.endpoint), e.g. http://127.0.0.1:8000/v1",
    )
    source.add_argument(
        "--predictions",
        action="append",
        type=Path,
        metavar="FILE.jsonl",
        help='score saved predictions: one {"prediction": "..."} per data line, in order, or matched by an "id" '
        "field; one per --data, in the same order",
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
        help="model family when the uri does not say; without --checkpoint, the box convention of the "
        "predictions (and, for REC, which VLM-R1 script reads them)",
    )
    served = p.add_argument_group("endpoint options")
    served.add_argument("--model", help="served model name (default: the endpoint's only model in /v1/models)")
    served.add_argument("--concurrency", type=int, default=8, help="requests in flight at once (default 8)")
    served.add_argument(
        "--retries", type=int, default=5, help="retries of a request on connection errors, 429 and 5xx (default 5)"
    )
    served.add_argument("--request-timeout", type=float, default=600.0, help="seconds per request (default 600)")
    served.add_argument("--api-key", help="bearer token for the endpoint (default: $VLMR1_ENDPOINT_API_KEY, else none)")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per in-process generation batch (default 8)")
    p.add_argument("--max-new-tokens", type=int, help="generation budget (default: the checkpoint's training one)")
    p.add_argument("--max-samples", type=int, help="score only the first N samples of each set")
    p.add_argument("--output", type=Path, help="results folder (default: evals/<checkpoint, model or file name>)")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--no-verify", action="store_true", help="do not check the checkpoint against its manifest")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=lazy("vlmr1_trainer.commands.eval:run", command="eval", extra="trainer"))
