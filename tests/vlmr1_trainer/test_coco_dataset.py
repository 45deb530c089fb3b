"""Dataset-level COCO AP (``coco_dataset_ap``) against pycocotools on random multi-image datasets."""

from __future__ import annotations

import contextlib
import io
import random
from collections.abc import Hashable, Sequence
from typing import Any

import pytest

from vlmr1_trainer.rewards.coco import Box, coco_ap, coco_dataset_ap

#: One image: GT items and predicted items, ``{"label": …, "bbox_2d": [x1, y1, x2, y2]}``.
Image = tuple[list[dict[str, Any]], list[dict[str, Any]]]


def pycocotools_dataset_ap(images: Sequence[Image]) -> tuple[float, float]:
    """(stats[0], stats[1]) of the whole dataset through pycocotools, every detection scoring 1.0.

    Image ids follow the dataset order. A predicted label that is in no GT gets a
    category id outside the GT categories, so COCOeval (not this helper) discards it.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    categories: dict[Hashable, int] = {}
    for gt, _ in images:
        for item in gt:
            categories.setdefault(item["label"], len(categories) + 1)
    unknown: dict[Hashable, int] = {}
    annotations, results = [], []
    for image_id, (gt, pred) in enumerate(images, start=1):
        for item in gt:
            x1, y1, x2, y2 = item["bbox_2d"]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": categories[item["label"]],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
        for item in pred:
            x1, y1, x2, y2 = item["bbox_2d"]
            label = item["label"]
            category = categories.get(label) or unknown.setdefault(label, 1000 + len(unknown))
            results.append(
                {"image_id": image_id, "category_id": category, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": 1.0}
            )
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": [{"id": i, "width": 2048, "height": 2048} for i in range(1, len(images) + 1)],
            "annotations": annotations,
            "categories": [{"id": cid, "name": str(label)} for label, cid in categories.items()],
        }
        coco_gt.createIndex()
        if not results:
            # loadRes rejects an empty list; a detection of no GT category is one COCOeval discards.
            results.append({"image_id": 1, "category_id": 999, "bbox": [0, 0, 1, 1], "score": 1.0})
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[0]), float(evaluator.stats[1])


def _boxes(items: list[dict[str, Any]]) -> list[Box]:
    boxes: list[Box] = []
    for item in items:
        x1, y1, x2, y2 = item["bbox_2d"]
        boxes.append((item["label"], [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], (x2 - x1) * (y2 - y1)))
    return boxes


def ours(images: Sequence[Image]) -> tuple[float, float]:
    return coco_dataset_ap([(_boxes(gt), _boxes(pred)) for gt, pred in images])


def _box(rng: random.Random) -> list[float]:
    x1, y1 = rng.randint(0, 60), rng.randint(0, 60)
    box: list[float] = [x1, y1, x1 + rng.randint(1, 40), y1 + rng.randint(1, 40)]
    roll = rng.random()
    if roll < 0.05:
        box[0], box[2] = box[2], box[0]  # swapped x: negative area, an ignored GT (or ignored FP)
    elif roll < 0.1:
        box = [b + rng.random() for b in box]
    return box


def _jitter(rng: random.Random, box: list[float]) -> list[float]:
    return [b + rng.choice([0, 0, 1, -1, 2, -3, 5]) for b in box]


def _image(rng: random.Random, labels: list[str]) -> Image:
    """GT of a random subset of the labels (often none), predictions near it, off it, duplicated or unknown."""
    present = rng.sample(labels, rng.randint(0, len(labels)))
    gt = [{"label": rng.choice(present), "bbox_2d": _box(rng)} for _ in range(rng.randint(1, 6))] if present else []
    pred: list[dict[str, Any]] = []
    for _ in range(rng.choice([0, 0, 1, 3, 6, 10])):
        roll = rng.random()
        if gt and roll < 0.5:
            src = rng.choice(gt)
            pred.append({"label": src["label"], "bbox_2d": _jitter(rng, src["bbox_2d"])})
        elif pred and roll < 0.6:
            pred.append(dict(rng.choice(pred)))  # a duplicate: the second one is a false positive
        elif roll < 0.65:
            pred.append({"label": "unknown", "bbox_2d": _box(rng)})  # in no GT: dropped
        else:
            pred.append({"label": rng.choice(labels), "bbox_2d": _box(rng)})  # maybe absent from this image
    return gt, pred


def _dataset(rng: random.Random) -> list[Image]:
    labels = ["a", "b", "c", "d"][: rng.randint(1, 4)]
    return [_image(rng, labels) for _ in range(rng.randint(1, 6))]


def _assert_equal(images: Sequence[Image]) -> None:
    expected, got = pycocotools_dataset_ap(images), ours(images)
    assert max(abs(g - e) for g, e in zip(got, expected, strict=True)) < 1e-12, images


@pytest.mark.parametrize("seed", range(4))
def test_matches_pycocotools_on_random_datasets(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(100):
        _assert_equal(_dataset(rng))


def test_more_than_100_detections_per_image_and_category() -> None:
    rng = random.Random(7)
    hit = {"label": "a", "bbox_2d": [0, 0, 10, 10]}
    far = {"label": "a", "bbox_2d": [50, 50, 60, 60]}
    images: list[Image] = [
        ([hit], [far] * 100 + [hit]),  # the 101st detection, a hit, is cut
        ([hit, {"label": "b", "bbox_2d": [5, 5, 30, 30]}], [hit] * 120),  # 100 kept: 1 TP, 99 FP
        ([], [{"label": rng.choice("ab"), "bbox_2d": _box(rng)} for _ in range(150)]),
    ]
    _assert_equal(images)
    _assert_equal(images[::-1])


def test_a_category_with_thousands_of_detections() -> None:
    """Past 1000 detections of a category the recall lookup switches to per-row searchsorted."""
    rng = random.Random(11)
    images: list[Image] = []
    for _ in range(25):
        gt = [{"label": rng.choice("ab"), "bbox_2d": _box(rng)} for _ in range(rng.randint(0, 8))]
        pred = [{"label": g["label"], "bbox_2d": _jitter(rng, g["bbox_2d"])} for g in gt]
        pred += [{"label": "a", "bbox_2d": _box(rng)} for _ in range(rng.randint(40, 110))]
        rng.shuffle(pred)
        images.append((gt, pred))
    assert sum(p["label"] == "a" for _, pred in images for p in pred[:100]) > 1000
    _assert_equal(images)


def test_detections_without_any_gt_and_empty_images() -> None:
    hit = {"label": "a", "bbox_2d": [0, 0, 10, 10]}
    _assert_equal([([], []), ([hit], [hit]), ([], [hit]), ([], [])])
    _assert_equal([([hit], []), ([], [])])
    assert ours([([], [hit])]) == (-1.0, -1.0)
    assert ours([([], [])]) == (-1.0, -1.0)


def test_a_single_image_equals_coco_ap() -> None:
    rng = random.Random(3)
    for _ in range(200):
        gt, pred = _image(rng, ["a", "b", "c"])
        assert coco_dataset_ap([(_boxes(gt), _boxes(pred))]) == coco_ap(_boxes(gt), _boxes(pred))


def test_pooled_across_images_not_averaged() -> None:
    """Image 1: one hit; image 2: a miss ranked before a hit. Per-image AP50s are 1 and 0.5; pooled is not 0.75."""
    a1, a2 = {"label": "a", "bbox_2d": [0, 0, 10, 10]}, {"label": "a", "bbox_2d": [20, 20, 40, 40]}
    miss = {"label": "a", "bbox_2d": [100, 100, 120, 120]}
    images: list[Image] = [([a1], [a1]), ([a2], [miss, a2])]
    ap50 = ours(images)[1]
    assert ap50 == pytest.approx(pycocotools_dataset_ap(images)[1], abs=1e-12)
    # Ranked hit, miss, hit over two GT: precision 1 up to recall 0.5, then 2/3.
    assert ap50 == pytest.approx((51 * 1.0 + 50 * 2 / 3) / 101, abs=1e-12)
