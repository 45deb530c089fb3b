"""Our numpy COCO AP against pycocotools on random one-image cases."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from vlmr1_trainer.rewards.coco import Box, _image_rows, coco_ap, coco_ap50, coco_dataset_ap

from .cocoref import pycocotools_ap


def _box(rng: random.Random) -> list[float]:
    x1, y1 = rng.randint(0, 60), rng.randint(0, 60)
    w, h = rng.randint(1, 40), rng.randint(1, 40)
    box: list[float] = [x1, y1, x1 + w, y1 + h]
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
    gt: list[dict[str, Any]] = [{"label": rng.choice(labels), "bbox_2d": _box(rng)} for _ in range(rng.randint(1, 7))]
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


# One image through coco_ap's plain-Python path must give numpy's bits exactly (the array
# path is coco_dataset_ap's); the rows it cannot promise go to the array path instead.
HIT: Box = ("a", [0.0, 0.0, 10.0, 10.0], 100.0)
NEAR: Box = ("a", [0.0, 0.0, 10.0, 8.0], 80.0)  # IoU 0.8 with HIT
FAR: Box = ("a", [50.0, 50.0, 10.0, 10.0], 100.0)
B_HIT: Box = ("b", [20.0, 20.0, 5.0, 5.0], 25.0)
SWAPPED: Box = ("a", [10.0, 0.0, -10.0, 10.0], -100.0)  # negative area: ignored GT, ignored unmatched detection
NAN: Box = ("a", [0.0, math.nan, 10.0, 10.0], math.nan)
INF: Box = ("a", [0.0, 0.0, math.inf, 10.0], math.inf)
TINY: Box = ("a", [0.0, 0.0, 1e-170, 1e-170], 0.0)  # areas underflow: a zero union, 0/0 in numpy
HUGE: Box = ("a", [0.0, 0.0, 1e200, 1e200], 1.0)  # w * h overflows: a union of inf - inf

PATH_CASES: list[tuple[str, list[Box], list[Box], str]] = [
    ("exact hit", [HIT], [HIT], "python"),
    ("IoU between thresholds", [HIT], [NEAR], "python"),
    ("miss then hit", [HIT], [FAR, HIT], "python"),
    ("duplicate hit is a false positive", [HIT], [HIT, HIT], "python"),
    ("no detections", [HIT, B_HIT], [], "python"),
    ("two categories, one missed", [HIT, B_HIT], [NEAR], "python"),
    ("two categories in shuffled order", [B_HIT, HIT, FAR], [HIT, B_HIT, FAR, NEAR], "python"),
    ("unknown label dropped", [HIT], [("z", [0.0, 0.0, 10.0, 10.0], 100.0), HIT], "python"),
    ("equal IoUs: the later GT", [HIT, HIT], [HIT, HIT], "python"),
    ("ignored GT sorted after the others", [SWAPPED, HIT], [HIT, SWAPPED], "python"),
    ("only ignored GT: -1", [SWAPPED], [SWAPPED], "python"),
    ("an ignored GT besides a category that counts", [SWAPPED, B_HIT], [B_HIT], "python"),
    ("more than 100 detections of a category", [HIT], [FAR] * 100 + [HIT], "python"),
    ("integer coordinates", [("a", [0, 0, 10, 10], 100)], [("a", [0, 0, 10, 8], 80)], "python"),
    ("NaN coordinate in a detection", [HIT], [NAN, HIT], "array"),
    ("NaN coordinate in a GT: min and max read it as fmin and fmax do", [NAN, HIT], [HIT], "python"),
    ("infinite width: IoU 0", [HIT], [INF], "python"),
    ("infinite GT area: ignored", [INF], [HIT], "python"),
    ("zero union", [TINY], [TINY], "array"),
    ("overflowing areas", [HUGE], [HUGE], "array"),
    ("more than 400 detection-GT pairs", [HIT] * 5, [NEAR] * 81, "array"),
]  # fmt: skip


def _same_bits(a: float, b: float) -> bool:
    return (a == b and math.copysign(1, a) == math.copysign(1, b)) or (a != a and b != b)


@pytest.mark.parametrize(("name", "gt", "dt", "path"), PATH_CASES, ids=[c[0] for c in PATH_CASES])
def test_python_path_gives_the_array_paths_bits(name: str, gt: list[Box], dt: list[Box], path: str) -> None:
    taken = "python" if len(gt) * len(dt) <= 400 and _image_rows(gt, dt, [0.5]) is not None else "array"
    assert taken == path
    expected = coco_dataset_ap([(gt, dt)])
    got = coco_ap(gt, dt)
    assert all(_same_bits(g, e) for g, e in zip(got, expected, strict=True)), (got, expected)
    assert _same_bits(coco_ap50(gt, dt), expected[1])


@pytest.mark.parametrize("seed", range(3))
def test_python_path_gives_the_array_paths_bits_on_random_images(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        gt, pred = _case(rng)
        gt += [{"label": rng.choice("abc"), "bbox_2d": _box(rng)} for _ in range(rng.randint(0, 3))]
        boxes = [_coco_box(g) for g in gt], [_coco_box(p) for p in pred]
        expected = coco_dataset_ap([boxes])
        assert coco_ap(*boxes) == expected, (gt, pred)
        assert coco_ap50(*boxes) == expected[1], (gt, pred)


def _coco_box(item: dict[str, Any]) -> Box:
    x1, y1, x2, y2 = item["bbox_2d"]
    return item["label"], [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], (x2 - x1) * (y2 - y1)
