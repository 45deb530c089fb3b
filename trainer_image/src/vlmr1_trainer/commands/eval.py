"""`vlmr1 eval`: score a checkpoint (or any model) on held-out data with VLM-R1's metrics."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

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
    """Handler of ``vlmr1 eval``: the data is checked before the model loads (it is cheaper)."""
    from vlmr1_trainer.evaluation.policy import load_policy
    from vlmr1_trainer.evaluation.runner import EvalSet, evaluate
    from vlmr1_trainer.preflight import EVAL_FIX, load_dataset, local_source

    if args.name and len(args.data) > 1:
        raise UserError("names one set; with several --data the names come from the file names", field="--name")
    for flag in ("batch_size", "max_new_tokens", "max_samples"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise UserError("must be at least 1", field=f"--{flag.replace('_', '-')}")
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
    output: Path = args.output or Path("evals") / (Path(args.checkpoint.rstrip("/")).name or "model")
    policy = load_policy(args.checkpoint, family=args.family, device=args.device, verify=not args.no_verify)
    metrics = evaluate(
        policy,
        sets,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        output=output,
        progress=not args.no_progress,
    )
    print(f"evaluated {policy.uri}" + (f" ({policy.digest})" if policy.digest else ""))
    width = max(len(k) for k in metrics)
    for key in sorted(metrics):
        print(f"  {key:<{width}}  {metrics[key]:.4f}")
    print(f"results: {output / 'metrics.json'} and {output}/<set>.samples.jsonl", file=sys.stderr)
    return 0
