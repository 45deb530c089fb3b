"""Our numpy COCO AP against pycocotools on random one-image cases."""

from __future__ import annotations

import random
from typing import Any

import pytest

from vlmr1_trainer.rewards.coco import coco_ap

from .cocoref import pycocotools_ap


def _box(rng: random.Random) -> list[float]:
    x1, y1 = rng.randint(0, 60), rng.randint(0, 60)
    w, h = rng.randint(1, 40), rng.randint(1, 40)
    box = [x1, y1, x1 + w, y1 + h]
    roll = rng.random()
    if roll < 0.05:
        box[0], box[2] = box[2], box[0]  # swapped x: negative area, an ignored GT
    elif roll < 0.1:
        box = [b + rng.random() for b in box]
    return box


def _jitter(rng: random.Random, box: list[float]) -> list[float]:
    return [b + rng.choice([0, 0, 1, -1, 2, -3, 5]) for b in box]


def _case(rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    labels = ["a", "b", "c"][: rng.randint(1, 3)]
    gt = [{"label": rng.choice(labels), "bbox_2d": _box(rng)} for _ in range(rng.randint(1, 7))]
    labels = sorted({g["label"] for g in gt})  # the reward drops other labels before COCO
    pred = []
    for _ in range(rng.randint(1, 10)):
        if rng.random() < 0.6:
            src = rng.choice(gt)
            label = src["label"] if rng.random() < 0.9 else rng.choice(labels)
            pred.append({"label": label, "bbox_2d": _jitter(rng, src["bbox_2d"])})
        else:
            pred.append({"label": rng.choice(labels), "bbox_2d": _box(rng)})
    return gt, pred


def _ours(gt: list[dict[str, Any]], pred: list[dict[str, Any]]) -> tuple[float, float]:
    def box(item: dict[str, Any]) -> tuple[Any, list[float], float]:
        x1, y1, x2, y2 = item["bbox_2d"]
        return item["label"], [x1, y1, x2 - x1, y2 - y1], (x2 - x1) * (y2 - y1)

    return coco_ap([box(g) for g in gt], [box(p) for p in pred])


@pytest.mark.parametrize("seed", range(4))
def test_matches_pycocotools_on_random_cases(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(100):
        gt, pred = _case(rng)
        expected = pycocotools_ap(gt, pred)
        got = _ours(gt, pred)
        assert got == pytest.approx(expected, abs=1e-6), (gt, pred)


def test_many_detections_truncated_at_100_per_category() -> None:
    gt = [{"label": "a", "bbox_2d": [0, 0, 10, 10]}]
    pred = [{"label": "a", "bbox_2d": [50, 50, 60, 60]}] * 120 + [{"label": "a", "bbox_2d": [0, 0, 10, 10]}]
    assert _ours(gt, pred) == pytest.approx(pycocotools_ap(gt, pred), abs=1e-12)
    assert _ours(gt, pred)[0] == 0.0


def test_all_gt_ignored_gives_minus_one() -> None:
    gt = [{"label": "a", "bbox_2d": [10, 0, 0, 10]}]
    pred = [{"label": "a", "bbox_2d": [10, 0, 0, 10]}]
    assert _ours(gt, pred) == pycocotools_ap(gt, pred) == (-1.0, -1.0)


def test_equal_ious_prefer_the_later_gt() -> None:
    gt = [{"label": "a", "bbox_2d": [0, 0, 10, 10]}, {"label": "a", "bbox_2d": [0, 0, 10, 10]}]
    pred = [{"label": "a", "bbox_2d": [0, 0, 10, 10]}, {"label": "a", "bbox_2d": [0, 0, 10, 10]}]
    assert _ours(gt, pred) == pytest.approx(pycocotools_ap(gt, pred), abs=1e-12)
