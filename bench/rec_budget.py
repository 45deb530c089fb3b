"""What does REC need to learn on a CPU? SFT, then GRPO from its checkpoint, on the simplest REC there is.

    python bench/rec_budget.py --out /tmp/rec-budget                  # about 6 minutes on 2 cores
    python bench/rec_budget.py --out /tmp/rec-long --sft-steps 3000 --grpo-steps 600

The task is REC reduced to localisation: one shape (circle, square or triangle, 12-28 px, one of
five colours) on a plain 56x56 image, the question names it ("the red circle") and the answer is
its tight box. 56x56 is exactly the tiny Qwen2.5-VL's input size, so the box needs no rescaling
and every reward sees the coordinates the model saw. Train data uses seed 1, the held-out set
seed 2 (``OUT/data``).

1. SFT (``method: sft``) from the random ``builtin://tiny-qwen2.5-vl``: the target is
   ``<think>The red circle.</think><answer>{"bbox_2d": [x1, y1, x2, y2]}</answer>`` (VLM-R1's
   REC answer, which ``rec_format`` checks);
2. GRPO from SFT's last checkpoint, pinned by ``model.digest``: ``rec_iou`` + ``rec_format``,
   eight completions per question, the README job's loss settings.

Both evaluate every checkpoint (and their starting model) on the held-out set with ``rec_acc``
(VLM-R1's evaluation script: the box inside ``{...}``, IoU > 0.5) and ``rec_acc_reward`` (the
training reward's parse: the first box literal, IoU >= 0.5). Printed per phase: steps, seconds,
both by step, and GRPO's rec_iou reward in the first and last quarter of its steps. Each run's folder is under ``OUT``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

from _runs import run_job_or_exit

from vlmr1_trainer.synthetic.colour_shapes import OPTIONS
from vlmr1_trainer.synthetic.shapes import COLOUR_INDEX, KINDS, encode_png, rasterise, uniform_int

SIDE = 56
QUESTION = "Please provide the bounding box coordinate of the region this sentence describes: the {} {}."


def write_split(out: Path, split: str, count: int, seed: int) -> Path:
    """``count`` one-shape REC samples; returns the JSONL file (images beside it in images/)."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(count):
        rng = random.Random(f"rec-budget:{seed}:{index}")
        colour = OPTIONS[uniform_int(rng, 0, len(OPTIONS) - 1)]
        kind = KINDS[uniform_int(rng, 0, len(KINDS) - 1)]
        size = uniform_int(rng, 12, 28)
        x0, y0 = uniform_int(rng, 1, SIDE - 1 - size), uniform_int(rng, 1, SIDE - 1 - size)
        shape = rasterise(kind, x0, y0, size)
        pixels = [0] * (SIDE * SIDE)
        for x, y in shape:
            pixels[y * SIDE + x] = COLOUR_INDEX[colour]
        name = f"{split}-{index:05d}.png"
        (out / "images" / name).write_bytes(encode_png(SIDE, SIDE, pixels))
        xs, ys = [p[0] for p in shape], [p[1] for p in shape]
        box = [min(xs), min(ys), max(xs) + 1, max(ys) + 1]
        answer = f"<think>The {colour} {kind}.</think><answer>{json.dumps({'bbox_2d': box})}</answer>"
        question = "<image>" + QUESTION.format(colour, kind)
        turns = [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
        lines.append(json.dumps({"id": name, "image": name, "conversations": turns}) + "\n")
    path = out / f"{split}.jsonl"
    path.write_text("".join(lines), encoding="ascii")
    return path


def job(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "vlmr1.io/v1alpha1", "kind": "GRPOJob", "metadata": {"name": name}, "spec": spec}


def common(data: Path, steps: int, batch: int, lr: float) -> dict[str, Any]:
    return {
        "task": "rec",
        "datasets": [{"jsonl": str(data / "train.jsonl"), "imageRoot": str(data / "images")}],
        "training": {
            "learningRate": lr,
            "lrScheduler": "constant_with_warmup",
            "warmupRatio": 0.1,
            "maxSteps": steps,
            "perDeviceBatchSize": batch,
            "gradientAccumulationSteps": 1,
            "precision": "fp32",
            "saveSteps": max(1, steps // 4),
        },
        "checkpoint": {"keep": 5, "bestMetric": "eval/held-out/rec_acc"},
        "evaluation": {
            "datasets": [{"name": "held-out", "jsonl": str(data / "val.jsonl"), "imageRoot": str(data / "images")}],
            "batchSize": 64,
            "maxNewTokens": 40,
            "onStart": True,
        },
    }


def run(doc: dict[str, Any], out: Path) -> tuple[Path, float]:
    run_dir = out / doc["metadata"]["name"]
    return run_dir, run_job_or_exit(doc, run_dir)


def report(name: str, run_dir: Path, seconds: float) -> None:
    from vlmr1_trainer.progress.curve import read_run

    curves = read_run(run_dir)
    print(f"{name}: {len(curves.steps)} steps, {seconds:.0f} s")
    for metric in ("rec_acc", "rec_acc_reward"):
        points = curves.evaluations.get(f"eval/held-out/{metric}", [])
        print(f"  {metric} by step: " + "  ".join(f"{step}: {value:.3f}" for step, value in points))
    gain = curves.gains().get("rec_iou")
    if gain is not None:
        print(f"  rec_iou reward: first quarter {gain[0]:.3f} -> last quarter {gain[1]:.3f} ({gain[2]:+.3f})")


def main(argv: list[str] | None = None) -> int:
    from vlmr1_core.checkpoints import verify_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train-count", type=int, default=4000)
    parser.add_argument("--sft-steps", type=int, default=1000)
    parser.add_argument("--grpo-steps", type=int, default=300)
    args = parser.parse_args(argv)
    data = args.out / "data"
    write_split(data, "train", args.train_count, seed=1)
    write_split(data, "val", 64, seed=2)

    sft = common(data, args.sft_steps, batch=16, lr=1e-3)
    sft = {"method": "sft", "model": {"uri": "builtin://tiny-qwen2.5-vl"}, **sft}
    sft_dir, sft_seconds = run(job("rec-sft", sft), args.out)
    report("SFT", sft_dir, sft_seconds)

    start = sft_dir / "checkpoints" / f"checkpoint-{args.sft_steps}"
    digest = verify_checkpoint(start).digest
    grpo = common(data, args.grpo_steps, batch=32, lr=5e-4)
    grpo = {
        "model": {"uri": str(start), "family": "qwen2.5-vl", "digest": digest},
        **grpo,
        "rewards": [{"name": "rec_iou"}, {"name": "rec_format"}],
        "grpo": {
            "numGenerations": 8,
            "lossType": "dr_grpo",
            "scaleRewards": "none",
            "temperature": 0.7,
            "beta": 0.0,
            "maxCompletionLength": 40,
        },
    }
    grpo_dir, grpo_seconds = run(job("rec-grpo", grpo), args.out)
    report("GRPO from SFT", grpo_dir, grpo_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
