"""Reference COCO AP through pycocotools, built the way VLM-R1 builds it per sample.

Shared by the equivalence test and bench/rewards.py (which measures the speed-up).
"""

from __future__ import annotations

import contextlib
import io
from typing import Any


def pycocotools_ap(gt: list[dict[str, Any]], pred: list[dict[str, Any]]) -> tuple[float, float]:
    """(stats[0], stats[1]) for valid GT items and the kept predictions (labels in the GT)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    labels: dict[Any, int] = {}
    for item in gt:
        labels.setdefault(item["label"], len(labels) + 1)
    annotations = []
    for i, item in enumerate(gt):
        x1, y1, x2, y2 = item["bbox_2d"][:4]
        annotations.append(
            {
                "id": i + 1,
                "image_id": 1,
                "category_id": labels[item["label"]],
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": 0,
            }
        )
    results = []
    for item in pred:
        x1, y1, x2, y2 = item["bbox_2d"][:4]
        results.append(
            {"image_id": 1, "category_id": labels[item["label"]], "bbox": [x1, y1, x2 - x1, y2 - y1], "score": 1.0}
        )
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": [{"id": 1, "width": 2048, "height": 2048}],
            "annotations": annotations,
            "categories": [{"id": cid, "name": str(label)} for label, cid in labels.items()],
        }
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[0]), float(evaluator.stats[1])
