"""bench/rewards.py's scoring section: the worker pool's speed-up and the time budget's bound.

Measured side by side in one run, through the same ScoredReward and WorkerPool training uses:

- ``math`` and ``accuracy`` (math-verify) on the same math cases with 1 and with 2 worker
  processes: completions per second and the ratio (target: at least 1.7x on 2 cores);
- the slowest adversarial completion (``10**10**10`` for math-verify, an 80 KB completion for
  ``repetition``) through a 1 s budget: the wall time of the scoring call (target: at most the
  budget + 50 ms).
"""

from __future__ import annotations

import random
import time
from typing import Any

from vlmr1_trainer import rewards
from vlmr1_trainer.rewards.pool import WorkerPool
from vlmr1_trainer.rewards.scoring import ScoredReward

BUDGET = 1.0
BATCH = 64
ROUNDS = 3


def math_case(rng: random.Random) -> tuple[str, str]:
    """A reasoning paragraph and a LaTeX or plain answer, right about half the time."""
    a, b = rng.randint(1, 40), rng.randint(2, 40)
    gold = rf"\frac{{{a}}}{{{b}}}" if rng.random() < 0.5 else str(a * b)
    if rng.random() < 0.5:
        answer = gold
    else:
        answer = rf"\frac{{{a + 1}}}{{{b}}}" if "frac" in gold else str(a * b + rng.randint(1, 9))
    steps = " ".join(f"step {i}: {rng.randint(1, 99)} + {rng.randint(1, 99)}" for i in range(12))
    return f"<think>{steps}</think><answer>${answer}$</answer>", f"<answer> ${gold}$ </answer>"


def _throughput(name: str, workers: int, completions: list[str], solutions: list[str]) -> float:
    reward = rewards.build(name)
    with WorkerPool({0: (name, {})}, workers) as pool:
        scored = ScoredReward(reward, BUDGET, pool)
        scored(completions[:BATCH], solution=solutions[:BATCH])  # warm: first math-verify calls
        start = time.perf_counter()
        for i in range(0, len(completions), BATCH):
            scored(completions[i : i + BATCH], solution=solutions[i : i + BATCH])
        return len(completions) / (time.perf_counter() - start)


def _in_process(name: str, completions: list[str], solutions: list[str]) -> float:
    """The same cases through the bare reward, one process: what the pool's overhead is measured against."""
    reward = rewards.build(name)
    reward(completions[:BATCH], solution=solutions[:BATCH])
    start = time.perf_counter()
    for i in range(0, len(completions), BATCH):
        reward(completions[i : i + BATCH], solution=solutions[i : i + BATCH])
    return len(completions) / (time.perf_counter() - start)


def _adversarial(name: str, completion: str, solution: str) -> tuple[float, Any, str]:
    reward = rewards.build(name)
    pool = WorkerPool({0: (name, {})}, 1) if reward.cpu_bound else None
    try:
        if pool is not None:
            pool.start()
        scored = ScoredReward(reward, BUDGET, pool)
        start = time.perf_counter()
        scores = scored([completion], solution=[solution])
        return time.perf_counter() - start, scores[0], scored.last_outcomes[0]
    finally:
        if pool is not None:
            pool.close()


def run(cases: int, seed: int = 0) -> None:
    """Print the pool and budget measurements for ``cases`` math completions."""
    rng = random.Random(seed)
    pairs = [math_case(rng) for _ in range(cases)]
    completions, solutions = [c for c, _ in pairs], [s for _, s in pairs]
    print(f"\nscoring pool (math-verify, {cases} completions in batches of {BATCH}, budget {BUDGET:g} s):")
    for name in ("math", "accuracy"):
        # Alternated, best of three each: one slow round (another process, a cold cache) must
        # not decide the ratio either way.
        bare, ones, twos = [], [], []
        for _ in range(ROUNDS):
            bare.append(_in_process(name, completions, solutions))
            ones.append(_throughput(name, 1, completions, solutions))
            twos.append(_throughput(name, 2, completions, solutions))
        here, one, two = max(bare), max(ones), max(twos)
        print(
            f"  {name:<10} in process {here:6.0f}/s   1 worker {one:6.0f}/s   2 workers {two:6.0f}/s   "
            f"2 vs 1: {two / one:4.2f}x (target >= 1.7x)   2 vs in process: {two / here:4.2f}x"
        )
    print(f"\nadversarial completions through the {BUDGET:g} s budget (target <= {BUDGET + 0.05:.2f} s):")
    # The slowest 80 KB completion found for repetition: a JSON list json-repair has to mend.
    broken = "<answer>```json\n[" + ",".join(f'{{"bbox_2d": [{i}, 2, 3, 4], "label": "a"' for i in range(2000))
    broken += "\n```</answer>"
    worst = 0.0
    for name, completion, solution in (
        ("math", "<answer>10**10**10</answer>", "<answer> 4 </answer>"),
        ("accuracy", "<answer>10**10**10</answer>", "<answer> 4 </answer>"),
        ("repetition", broken, ""),
    ):
        seconds, score, outcome = _adversarial(name, completion, solution)
        worst = max(worst, seconds)
        print(f"  {name:<10} {len(completion):6d} chars  {seconds:6.3f} s  score {score}  ({outcome})")
    print(f"  slowest {worst:.3f} s = budget + {(worst - BUDGET) * 1000:.0f} ms")
