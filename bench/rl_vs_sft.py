"""RL vs SFT in miniature: from one starting model, more SFT or GRPO for the same wall-clock budget.

    python bench/rl_vs_sft.py --out /tmp/rl-vs-sft      # about 6 minutes on 2 cores

VLM-R1's claim is that GRPO keeps improving where SFT plateaus and generalises where SFT
degrades. Both arms here continue from ``builtin://tiny-qwen2.5-vl-colour`` on the shipped
colour-shapes train split:

* GRPO: ``examples/grpojob-colour-local.yaml`` as shipped (mcq + format rewards);
* SFT: ``examples/grpojob-colour-sft-local.yaml`` (the answer turns as targets), with as many
  steps as fit in the GRPO arm's training time: a short calibration run measures SFT's
  steady seconds per step first (the median after five steps).

Every checkpoint of both (eight per arm) and the starting model are evaluated in-domain on the
val split and out of distribution on the ood split: 84x84 images (nine image tokens instead of
four) with a small 12-20 px shape, always on the grey-noise background, where train and val have
56x56 images, a 28-44 px shape, and a plain background half the time. Training time is the sum
of the logged step times (checkpoint evaluation excluded, as each arm evaluates the same sets
the same number of times). Prints a table; writes ``OUT/results.json`` and ``OUT/rl_vs_sft.png``
(accuracy by training second, both arms, both splits); each run's folder is under ``OUT``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import yaml
from _runs import run_job_or_exit

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
GRPO_JOB = EXAMPLES / "grpojob-colour-local.yaml"
SFT_JOB = EXAMPLES / "grpojob-colour-sft-local.yaml"
DATA = EXAMPLES / "data" / "colour-shapes"
CHECKPOINTS = 8
SETS = ("colour-shapes-val", "colour-shapes-ood")


def manifest(job: Path, steps: int, seed: int) -> dict[str, Any]:
    """The job with absolute data paths, val and ood evaluation, ``steps`` steps, CHECKPOINTS saves."""
    doc = yaml.safe_load(job.read_text(encoding="utf-8"))
    spec = doc["spec"]
    for dataset in spec["datasets"]:
        dataset["jsonl"] = str(DATA / "train.jsonl")
        dataset["imageRoot"] = str(DATA / "images")
    spec["evaluation"]["datasets"] = [
        {"name": name, "jsonl": str(DATA / f"{name.rsplit('-', 1)[1]}.jsonl"), "imageRoot": str(DATA / "images")}
        for name in SETS
    ]
    spec["training"] |= {"maxSteps": steps, "saveSteps": max(1, steps // CHECKPOINTS), "seed": seed}
    spec["checkpoint"]["keep"] = CHECKPOINTS + 1
    return doc


def run(doc: dict[str, Any], out: Path, name: str) -> Path:
    run_job_or_exit(doc, out / name)
    return out / name


def step_times(run_dir: Path) -> list[float]:
    """Each logged step's time, in step order, from the run's progress lines."""
    times = []
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        if event.get("event") == "progress" and isinstance(event.get("step_time_seconds"), int | float):
            times.append(float(event["step_time_seconds"]))
    return times


def training_seconds(run_dir: Path) -> tuple[int, float]:
    """(steps, summed step times) from the run's progress lines."""
    times = step_times(run_dir)
    return len(times), math.fsum(times)


def steady_step_seconds(run_dir: Path) -> float:
    """The median step time after the first five (which pay for warm-up and first allocations)."""
    times = sorted(step_times(run_dir)[5:])
    return times[len(times) // 2]


def evaluations(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from vlmr1_trainer.progress.curve import read_run

    curves = read_run(run_dir)
    return {name: curves.evaluations.get(f"eval/{name}/mcq_acc", []) for name in SETS}


def draw(results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True, constrained_layout=True)
    for axis, name in zip(axes, SETS, strict=True):
        for arm in ("grpo", "sft"):
            r = results[arm]
            per_step = r["train_seconds"] / r["steps"]
            points = r["eval"][name]
            axis.plot([s * per_step for s, _ in points], [v for _, v in points], marker="o", label=arm.upper())
        axis.set_title(f"{name.rsplit('-', 1)[1]} (mcq_acc)")
        axis.set_xlabel("training seconds")
        axis.legend()
    axes[0].set_ylabel("held-out accuracy")
    fig.savefig(out / "rl_vs_sft.png", dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs, results.json and the plot")
    parser.add_argument("--seed", type=int, default=0, help="training seed of both arms (default 0)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    grpo_steps = yaml.safe_load(GRPO_JOB.read_text())["spec"]["training"]["maxSteps"]
    grpo_dir = run(manifest(GRPO_JOB, grpo_steps, args.seed), args.out, "grpo")
    steps, budget = training_seconds(grpo_dir)
    calibration = run(manifest(SFT_JOB, 40, args.seed), args.out, "sft-calibration")
    sft_steps = max(CHECKPOINTS, math.floor(budget / steady_step_seconds(calibration)))
    sft_dir = run(manifest(SFT_JOB, sft_steps, args.seed), args.out, "sft")
    results: dict[str, Any] = {}
    for arm, run_dir in (("grpo", grpo_dir), ("sft", sft_dir)):
        arm_steps, seconds = training_seconds(run_dir)
        results[arm] = {"steps": arm_steps, "train_seconds": round(seconds, 1), "eval": evaluations(run_dir)}
    print(f"budget: GRPO trained {steps} steps in {budget:.0f} s; SFT got {sft_steps} steps")
    header = "".join(f"{n.rsplit('-', 1)[1] + ' start':>12}{'final':>8}{'best':>8}" for n in SETS)
    print(f"{'arm':<6}{'steps':>7}{'train s':>9}{header}")
    for arm, r in results.items():
        row = f"{arm.upper():<6}{r['steps']:>7}{r['train_seconds']:>9.0f}"
        for name in SETS:
            points = r["eval"][name]
            row += f"{points[0][1]:>12.3f}{points[-1][1]:>8.3f}{max(v for _, v in points):>8.3f}"
        print(row)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    draw(results, args.out)
    print(f"wrote {args.out / 'results.json'} and {args.out / 'rl_vs_sft.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
