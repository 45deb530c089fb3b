"""Does the README's learning job learn on every seed? Runs it per seed and prints curves, gains and time.

    python bench/learning.py --out /tmp/learning                 # seeds 0 1 2, about 6 minutes on 2 cores
    python bench/learning.py --out /tmp/k --set grpo.lossType=grpo --set grpo.scaleRewards=group

Each seed is one ``vlmr1 run`` of ``examples/grpojob-colour-local.yaml`` (``--job`` for
another) with ``spec.training.seed`` set (rollout sampling and data order; the builtin starting
model is the same for all) and any ``--set PATH=VALUE`` overrides of the spec (camelCase, as in
the YAML; values are parsed as YAML). For each run it prints the task reward's mean per tenth
of the steps, the first- and last-quarter means and their gain, every evaluation point of the
first evaluation metric (step 0 is the starting model), the final checkpoint's gain over the
starting model and over the first checkpoint, the wall time, and whether the run met the
goal: a task-reward gain and a held-out gain of at least ``--goal`` (0.15).

The job's own first reward (``spec.rewards[0]``) is the task reward. Results are also written to
``OUT/results.json``; each run's folder (checkpoints, metrics.jsonl, reward_curve.png, log) is
``OUT/seed-<N>``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import yaml
from _runs import run_job

REPO = Path(__file__).resolve().parent.parent
DEFAULT_JOB = REPO / "examples" / "grpojob-colour-local.yaml"


def job_for_seed(job: Path, seed: int, overrides: list[str]) -> dict[str, Any]:
    """The job's manifest with the seed and overrides set and data paths made absolute."""
    doc = yaml.safe_load(job.read_text(encoding="utf-8"))
    spec = doc["spec"]
    base = job.resolve().parent
    for dataset in [*spec["datasets"], *spec.get("evaluation", {}).get("datasets", [])]:
        for key in ("jsonl", "imageRoot"):
            if key in dataset and "://" not in dataset[key]:
                dataset[key] = str((base / dataset[key]).resolve())
    spec.setdefault("training", {})["seed"] = seed
    for item in overrides:
        path, _, value = item.partition("=")
        if not path or not _:
            raise SystemExit(f"--set {item!r}: expected PATH=VALUE, for example grpo.lossType=grpo")
        node = spec
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = yaml.safe_load(value)
    return doc


def tenths(values: list[float]) -> list[float]:
    """The mean of each tenth of the series (fewer chunks for a short series)."""
    chunks = min(10, len(values))
    size = len(values) / chunks if chunks else 0
    return [
        math.fsum(values[int(i * size) : int((i + 1) * size)]) / max(1, int((i + 1) * size) - int(i * size))
        for i in range(chunks)
    ]


def run_seed(job: Path, seed: int, overrides: list[str], out: Path) -> dict[str, Any]:
    from vlmr1_trainer.progress.curve import quarter_gain, read_run

    run_dir = out / f"seed-{seed}"
    doc = job_for_seed(job, seed, overrides)
    code, seconds = run_job(doc, run_dir)
    result: dict[str, Any] = {"seed": seed, "exit_code": code, "seconds": round(seconds, 1)}
    if code != 0:
        return result
    curves = read_run(run_dir)
    task = doc["spec"]["rewards"][0]["name"]
    series = [v for v in curves.rewards.get(task, []) if v is not None]
    gain = quarter_gain(series)
    result |= {"task_reward": task, "curve": [round(v, 3) for v in tenths(series)]}
    if gain is not None:
        result |= {"reward_first_quarter": gain[0], "reward_last_quarter": gain[1], "reward_gain": gain[2]}
    if curves.evaluations:
        metric, points = next(iter(curves.evaluations.items()))
        start = points[0][1] if points[0][0] == 0 else None
        checkpoints = [p for p in points if p[0] > 0]
        result |= {"eval_metric": metric, "eval": points}
        if checkpoints:
            final = checkpoints[-1][1]
            result["eval_gain_over_first_checkpoint"] = final - checkpoints[0][1]
            if start is not None:
                result["eval_gain_over_start"] = final - start
    return result


def met(result: dict[str, Any], goal: float) -> bool:
    gains = [
        result.get("reward_gain"),
        result.get("eval_gain_over_start"),
        result.get("eval_gain_over_first_checkpoint"),
    ]
    return result.get("exit_code") == 0 and all(g is not None and g >= goal for g in gains)


def report(result: dict[str, Any], goal: float) -> str:
    if result.get("exit_code") != 0:
        return (
            f"seed {result['seed']}: vlmr1 run failed (exit {result['exit_code']}); see seed-{result['seed']}/run.log"
        )
    lines = [f"seed {result['seed']}: {result['seconds']:.0f} s, {'meets' if met(result, goal) else 'MISSES'} the goal"]
    lines.append(f"  {result['task_reward']} per tenth of the steps: " + " ".join(f"{v:.2f}" for v in result["curve"]))
    if "reward_gain" in result:
        lines.append(
            f"  {result['task_reward']} first quarter {result['reward_first_quarter']:.3f} -> last quarter "
            f"{result['reward_last_quarter']:.3f} ({result['reward_gain']:+.3f})"
        )
    if "eval" in result:
        points = "  ".join(f"{step}: {value:.3f}" for step, value in result["eval"])
        lines.append(f"  {result['eval_metric']} by step: {points}")
        gains = []
        if "eval_gain_over_start" in result:
            gains.append(f"{result['eval_gain_over_start']:+.3f} over the starting model")
        if "eval_gain_over_first_checkpoint" in result:
            gains.append(f"{result['eval_gain_over_first_checkpoint']:+.3f} over the first checkpoint")
        lines.append("  final checkpoint: " + ", ".join(gains))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs and results.json")
    parser.add_argument("--job", type=Path, default=DEFAULT_JOB, help="GRPOJob manifest (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    parser.add_argument("--goal", type=float, default=0.15, help="gain every seed should reach (default 0.15)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for seed in args.seeds:
        result = run_seed(args.job, seed, args.overrides, args.out)
        results.append(result)
        print(report(result, args.goal), flush=True)
    summary = {"job": str(args.job), "overrides": args.overrides, "goal": args.goal, "runs": results}
    (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    passed = sum(met(r, args.goal) for r in results)
    print(f"{passed}/{len(results)} seeds met the goal (gains >= {args.goal})")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
