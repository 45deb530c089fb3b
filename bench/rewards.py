"""Completions scored per second for every reward, on generated cases of typical length.

    .venv/bin/python bench/rewards.py [--cases 10000] [--coco-cases 1000] [--scoring-cases 2048]

Completions are about 200 tokens (a reasoning paragraph in <think>, then the answer).
Some rewards are also run the way VLM-R1 computes them, on the same cases in the same
run, and the speed-up is printed with the largest score difference: the od_* rewards
with pycocotools doing the AP (COCO objects built per sample, as VLM-R1 does) on the
first --coco-cases, and `repetition` with VLM-R1's algorithm (restated below) on all of
them. Each rate is the best of up to five passes within about a second, so that a
short pass on a busy machine does not decide a ratio. One process, one core.

Then the scoring section (bench/_scoring.py), through the pool and budgets training uses:
math and accuracy with 1 and 2 worker processes (target: 2 workers at least 1.7x on 2
cores), and the slowest adversarial completion through the 1 s budget (target: at most the
budget + 50 ms).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import re
import time
from collections.abc import Callable
from typing import Any

import _scoring  # bench/ is the script's folder, first on the import path

from vlmr1_trainer import rewards
from vlmr1_trainer.rewards.coco import Box
from vlmr1_trainer.rewards.detection import OdAp50Reward, OdApReward, OdLengthReward
from vlmr1_trainer.rewards.repetition import RepetitionReward

WORDS = ["the", "a", "box", "object", "image", "left", "right", "top", "bottom", "red", "blue", "person", "car"]
LABELS = ["person", "car", "dog", "cat", "chair", "cup"]


def reasoning(rng: random.Random, words: int = 150) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def box(rng: random.Random) -> list[int]:
    x, y = rng.randint(0, 600), rng.randint(0, 400)
    return [x, y, x + rng.randint(5, 200), y + rng.randint(5, 200)]


def jitter(rng: random.Random, b: list[int]) -> list[int]:
    return [v + rng.randint(-8, 8) for v in b]


def rec_case(rng: random.Random) -> tuple[str, dict[str, Any]]:
    gt = box(rng)
    pred = jitter(rng, gt) if rng.random() < 0.7 else box(rng)
    answer = json.dumps({"bbox_2d": pred, "label": rng.choice(LABELS)})
    sample = {"solution": f"<answer> {json.dumps(gt)} </answer>", "image_size": [640, 480], "input_size": [644, 476]}
    return f"<think>{reasoning(rng)}</think>\n<answer>{answer}</answer>", sample


def od_case(rng: random.Random) -> tuple[str, dict[str, Any]]:
    gt_boxes = [(box(rng), rng.choice(LABELS[:3])) for _ in range(rng.randint(1, 6))]
    gt = [{"bbox_2d": b, "label": label} for b, label in gt_boxes]
    pred = [{"bbox_2d": jitter(rng, b), "label": label} for b, label in gt_boxes if rng.random() < 0.8]
    pred += [{"bbox_2d": box(rng), "label": rng.choice(LABELS)} for _ in range(rng.randint(0, 3))]
    rng.shuffle(pred)
    fence = "```json\n" + json.dumps(pred) + "\n```"
    solution = "<answer> ```json\n" + json.dumps(gt) + "\n``` </answer>"
    return f"<think>{reasoning(rng, 80)}</think>\n<answer>{fence}</answer>", {"solution": solution}


def repetition_case(rng: random.Random) -> tuple[str, dict[str, Any]]:
    """Half box lists in a json fence (VLM-R1's list path), half plain text (its 6-gram path)."""
    completion, sample = od_case(rng) if rng.random() < 0.5 else rec_case(rng)
    return completion, {"solution": sample["solution"]}  # the same columns in every case


def text_case(answers: list[tuple[str, str]]) -> Callable[[random.Random], tuple[str, dict[str, Any]]]:
    def make(rng: random.Random) -> tuple[str, dict[str, Any]]:
        said, truth = rng.choice(answers)
        sample = {"solution": f"<answer> {truth} </answer>", "completion_length": rng.randint(50, 400)}
        return f"<think>{reasoning(rng)}</think>\n<answer>{said}</answer>", sample

    return make


MCQ = [("B", "B"), ("The answer is C.", "B"), ("A", "A"), ("D.", "C")]
YES_NO = [("Yes", "yes"), ("No, it is not.", "yes"), ("no", "no")]
GUI = [("missing button", "missing button"), ("no defect", "text overlap")]
NUMBERS = [("42", "42"), ("3.5", "7/2"), ("\\frac{1}{2}", "0.5"), ("12", "13"), ("x = 4", "4")]
MATH = [("\\boxed{\\frac{1}{2}}", "1/2"), ("\\boxed{3}", "4"), ("5", "5"), ("\\boxed{\\sqrt{2}}", "\\sqrt{2}")]

GENERATORS: dict[str, Callable[[random.Random], tuple[str, dict[str, Any]]]] = {
    "format": rec_case,
    "rec_format": rec_case,
    "rec_iou": rec_case,
    "rec_acc": rec_case,
    "od_ap": od_case,
    "od_ap50": od_case,
    "od_length": od_case,
    "od_weighted_sum": od_case,
    "accuracy": text_case(NUMBERS + MCQ),
    "math": text_case(MATH),
    "mcq": text_case(MCQ),
    "yes_no": text_case(YES_NO),
    "all_match": text_case(GUI),
    "repetition": repetition_case,
    "length_cosine": text_case(MCQ),
}
MATH_VERIFY_BOUND = {"accuracy", "math", "length_cosine"}


def _pycocotools_ap(gt: list[Box], dt: list[Box]) -> tuple[float, float]:
    from pycocotools.coco import COCO  # type: ignore[import-untyped]
    from pycocotools.cocoeval import COCOeval  # type: ignore[import-untyped]

    cats: dict[Any, int] = {}
    for g in gt:
        cats.setdefault(g[0], len(cats) + 1)
    anns = [
        {"id": i + 1, "image_id": 1, "category_id": cats[g[0]], "bbox": list(g[1]), "area": g[2], "iscrowd": 0}
        for i, g in enumerate(gt)
    ]
    results = [{"image_id": 1, "category_id": cats[d[0]], "bbox": list(d[1]), "score": 1.0} for d in dt]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {
            "images": [{"id": 1, "width": 2048, "height": 2048}],
            "annotations": anns,
            "categories": [{"id": i, "name": str(c)} for c, i in cats.items()],
        }
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[0]), float(evaluator.stats[1])


class _CocoAp(OdApReward):
    def metric(self, gt: list[Box], pred: list[Box]) -> float:
        return _pycocotools_ap(gt, pred)[0]


class _CocoAp50(OdAp50Reward):
    def metric(self, gt: list[Box], pred: list[Box]) -> float:
        return _pycocotools_ap(gt, pred)[1]


class _CocoLength(OdLengthReward):
    def metric(self, gt: list[Box], pred: list[Box]) -> float:
        return _pycocotools_ap(gt, pred)[0]


_JSON_FENCE = re.compile(r"```json(.*?)```", re.DOTALL)
_ANY_FENCE = re.compile(r"```(.*?)```", re.DOTALL)
_BOX_LIST = re.compile(r'\[\s*{.*?"bbox_2d".*?"label".*?}\s*\]', re.DOTALL)


def vlmr1_repetition(content: str) -> float:
    """VLM-R1's ``repetition_reward`` (grpo_jsonl.py), restated step for step: its regexes, its
    parsing with json_repair as the fallback, and its n-gram count (a set of the n-grams seen and
    a running total; 1-grams of ``"{bbox_2d}_{label}"`` keys for a list, 6-grams of words else)."""
    if content == "":
        return 0.0
    match = _JSON_FENCE.search(content)
    if match:
        candidate: str | None = match.group(1).strip()
    else:
        match = _ANY_FENCE.search(content)
        candidate = match.group(1).strip() if match else None
        if not candidate:
            match = _BOX_LIST.search(content)
            candidate = match.group(0) if match else None
    if candidate:
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            try:
                import json_repair

                data = json.loads(json_repair.repair_json(candidate))
            except Exception:
                data = None
        if data and isinstance(data, list):
            try:
                keys = [f"{item['bbox_2d']}_{item['label']}" for item in data if "bbox_2d" in item and "label" in item]
                return _ngram_penalty(keys, 1)
            except KeyError:
                pass
    if len(content.split()) < 6:
        return 0.0
    return _ngram_penalty(content.lower().split(), 6)


def _ngram_penalty(tokens: list[str], n: int) -> float:
    seen: set[tuple[str, ...]] = set()
    total = 0
    for gram in zip(*[tokens[i:] for i in range(n)], strict=False):
        seen.add(gram)
        total += 1
    if total == 0:
        return 0.0
    return (1 - len(seen) / total) * -1.0


class _VlmR1Repetition(RepetitionReward):
    def score(self, completion: str, sample: Any) -> float:
        return vlmr1_repetition(completion)


#: reward -> (what VLM-R1 runs, its name in the note, which cases: "coco" the first --coco-cases, "all").
BASELINES: dict[str, tuple[Callable[[], Callable[..., list[float | None]]], str, str]] = {
    "od_ap": (_CocoAp, "pycocotools", "coco"),
    "od_ap50": (_CocoAp50, "pycocotools", "coco"),
    "od_length": (_CocoLength, "pycocotools", "coco"),
    "repetition": (_VlmR1Repetition, "VLM-R1", "all"),
}


def rate(
    reward: Callable[..., list[float | None]], cases: list[tuple[str, dict[str, Any]]], budget_s: float = 1.0
) -> tuple[float, list[Any]]:
    """Completions per second (the best pass of up to five within ``budget_s``) and the scores."""
    completions = [c for c, _ in cases]
    columns = {k: [s[k] for _, s in cases] for k in cases[0][1]}
    best, spent, passes = float("inf"), 0.0, 0
    while passes < 5 and (passes == 0 or spent + best <= budget_s):
        start = time.perf_counter()
        scores = reward(completions, **columns)
        elapsed = time.perf_counter() - start
        best, spent, passes = min(best, elapsed), spent + elapsed, passes + 1
    return len(cases) / best, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000, help="generated cases per reward")
    parser.add_argument("--coco-cases", type=int, default=1_000, help="od cases also scored through pycocotools")
    parser.add_argument("--only", nargs="*", help="reward names to run (default: all)")
    parser.add_argument(
        "--scoring-cases", type=int, default=2_048, help="math cases for the worker pool (0: skip the scoring section)"
    )
    args = parser.parse_args()
    names = args.only or rewards.available()
    print(f"{'reward':<16} {'cases':>6} {'completions/s':>14}  note")
    for name in names:
        rng = random.Random(name)
        cases = [GENERATORS[name](rng) for _ in range(args.cases)]
        per_second, scores = rate(rewards.build(name), cases)
        note = "math-verify bound" if name in MATH_VERIFY_BOUND else ("" if per_second >= 20_000 else "BELOW 20,000/s")
        if name in BASELINES:
            baseline, label, which = BASELINES[name]
            subset = cases[: args.coco_cases] if which == "coco" else cases
            base_rate, base_scores = rate(baseline(), subset)
            worst = max(abs(a - b) for a, b in zip(scores[: len(subset)], base_scores, strict=True))
            speedup = per_second / base_rate
            note = f"{label} {base_rate:,.0f}/s on {len(subset)}: {speedup:.2f}x faster (max diff {worst:.1e})"
        print(f"{name:<16} {len(cases):>6} {per_second:>14,.0f}  {note}")
    if args.scoring_cases:
        _scoring.run(args.scoring_cases)


if __name__ == "__main__":
    main()
