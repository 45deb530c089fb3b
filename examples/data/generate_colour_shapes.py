#!/usr/bin/env python3
"""Generate ``colour-shapes`` (vlmr1_trainer.synthetic.colour_shapes): a visual multiple-choice question.

    python examples/data/generate_colour_shapes.py --out examples/data/colour-shapes --seed 0

writes ``train.jsonl``, ``val.jsonl``, ``ood.jsonl`` (a shifted split), ``images/<split>-<index>.png``
and ``README.md``, byte for byte the same on any machine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from vlmr1_trainer.synthetic.colour_shapes import generate


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--train-count", type=int, default=256, help="training samples (default 256)")
    parser.add_argument("--val-count", type=int, default=64, help="validation samples (default 64)")
    parser.add_argument("--ood-count", type=int, default=64, help="shifted-distribution samples (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    args = parser.parse_args(argv)
    counts = {"train": args.train_count, "val": args.val_count, "ood": args.ood_count}
    if any(n < 1 for n in counts.values()):
        parser.error("every split needs at least one sample")
    files = generate(args.out, counts, args.seed)
    print(f"wrote {len(files)} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
