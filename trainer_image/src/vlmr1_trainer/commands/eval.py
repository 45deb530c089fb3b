"""`vlmr1 eval`: score a checkpoint, a model, a serving endpoint or saved predictions on held-out data with
VLM-R1's metrics."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from vlmr1_core.errors import UserError

#: Splits FILE.jsonl:IMAGE_ROOT at a colon that does not start a scheme's "://".
_DATA_SEP = re.compile(r":(?!//)")


def set_name(path: str) -> str:
    """A metric-safe set name from a file name.

    >>> set_name("data/RefCOCO_val.jsonl")
    'refcoco-val'
    """
    stem = Path(path.split("://", 1)[-1]).name.removesuffix(".jsonl")
    return re.sub(r"[^a-z0-9.-]+", "-", stem.lower()).strip("-.") or "data"


def parse_data(value: str) -> tuple[str, str | None]:
    """``FILE.jsonl[:IMAGE_ROOT]`` (either part may be a uri).

    >>> parse_data("pvc://d/val.jsonl:pvc://d/coco")
    ('pvc://d/val.jsonl', 'pvc://d/coco')
    >>> parse_data("val.jsonl")
    ('val.jsonl', None)
    """
    parts = _DATA_SEP.split(value)
    if len(parts) > 2 or not parts[0]:
        raise UserError(f"expected FILE.jsonl or FILE.jsonl:IMAGE_ROOT, got {value!r}", field="--data")
    return parts[0], parts[1] if len(parts) == 2 and parts[1] else None


def run(args: argparse.Namespace) -> int:
    """Handler of ``vlmr1 eval``: arguments and data are checked before any model file loads."""
    from vlmr1_trainer.evaluation.runner import EvalSet, evaluate
    from vlmr1_trainer.preflight import EVAL_FIX, load_dataset, local_source

    if args.name and len(args.data) > 1:
        raise UserError("names one set; with several --data the names come from the file names", field="--name")
    for flag in ("batch_size", "max_new_tokens", "max_samples", "concurrency"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise UserError("must be at least 1", field=f"--{flag.replace('_', '-')}")
    if args.retries < 0:
        raise UserError("must be at least 0", field="--retries")
    if args.request_timeout <= 0:
        raise UserError("must be a positive number of seconds", field="--request-timeout")
    if args.checkpoint is None and args.endpoint is None and args.predictions is None:
        raise UserError(
            "nothing to evaluate", field="--checkpoint", fix="pass --checkpoint, --endpoint URL or --predictions FILE"
        )
    if args.endpoint is None and (args.model or args.api_key):
        raise UserError("goes with --endpoint", field="--model" if args.model else "--api-key")
    if args.predictions is not None and len(args.predictions) != len(args.data):
        raise UserError(
            f"{len(args.predictions)} predictions files for {len(args.data)} --data sets",
            field="--predictions",
            fix="give one --predictions per --data, in the same order",
        )
    sets = []
    for value in args.data:
        jsonl, images = parse_data(value)
        load_dataset([local_source(jsonl, images, None, field="--data", option=True)], on_bad_sample="error",
                     field="--data", fix=EVAL_FIX)  # fmt: skip
        sets.append(EvalSet(args.name or set_name(jsonl), args.task, jsonl, images, args.max_samples))
    if len({s.name for s in sets}) != len(sets):
        raise UserError(
            "two files have the same name", field="--data", fix="evaluate them in separate runs or rename one"
        )
    source, label = _source(args, sets)
    if args.checkpoint is not None and source is None:
        from vlmr1_trainer.evaluation.policy import load_policy

        policy = load_policy(args.checkpoint, family=args.family, device=args.device, verify=not args.no_verify)
    else:
        from vlmr1_trainer.evaluation.policy import load_reference

        policy = load_reference(args.checkpoint, family=args.family, verify=not args.no_verify,
                                need_processor=args.task == "rec")  # fmt: skip
    output: Path = args.output or Path("evals") / label
    metrics = evaluate(
        policy,
        sets,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        output=output,
        progress=not args.no_progress,
        source=source,
    )
    what = policy.uri or "predictions"
    if args.endpoint is not None:
        what = f"{args.endpoint} ({policy.uri})" if policy.uri else args.endpoint
    print(f"evaluated {what}" + (f" ({policy.digest})" if policy.digest else ""))
    width = max(len(k) for k in metrics)
    for key in sorted(metrics):
        print(f"  {key:<{width}}  {metrics[key]:.4f}")
    print(f"results: {output / 'metrics.json'} and {output}/<set>.samples.jsonl", file=sys.stderr)
    return 0


def _source(args: argparse.Namespace, sets: list[Any]) -> tuple[Any, str]:
    """The prediction source (None: in-process) and the default results folder name."""
    if args.endpoint is not None:
        import os

        from vlmr1_trainer.evaluation.endpoint import ChatEndpoint
        from vlmr1_trainer.evaluation.runner import FromEndpoint

        endpoint = ChatEndpoint(
            args.endpoint,
            model=args.model,
            concurrency=args.concurrency,
            retries=args.retries,
            timeout=args.request_timeout,
            api_key=args.api_key or os.environ.get("VLMR1_ENDPOINT_API_KEY") or None,
        )
        endpoint.resolve_model()  # an unreachable server or a wrong name fails before the data loads
        return FromEndpoint(endpoint), _slug(endpoint.model or "endpoint")
    if args.predictions is not None:
        from vlmr1_trainer.evaluation.predictions import read_predictions
        from vlmr1_trainer.evaluation.runner import FromFiles

        files = {s.name: read_predictions(path) for s, path in zip(sets, args.predictions, strict=True)}
        return FromFiles(files), _slug(args.predictions[0].name.removesuffix(".jsonl"))
    return None, Path(args.checkpoint.rstrip("/")).name or "model"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "eval"
