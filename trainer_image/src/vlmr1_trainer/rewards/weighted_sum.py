"""``od_weighted_sum``: VLM-R1's weighted_sum detection score (greedy IoU matching, no COCO).

``0.7 * position + 0.3 * completeness`` where position is the mean IoU of greedily
matched pairs (IoU >= 0.5, counted only when the labels agree) and completeness
penalises missed GT and false alarms. Unlike ``od_ap`` it reads the *first* json
fence, lowercases everything first, and counts unknown labels as false alarms.

Deliberate difference from VLM-R1: a predicted item without a string label is
compared as label ``""``; VLM-R1 reuses the previous item's label (or crashes on the
first item) because its error handler assigns the wrong variable.

>>> gt = '<answer> ```json\\n[{"bbox_2d": [0, 0, 10, 10], "label": "cat"}]\\n``` </answer>'
>>> hit = '```json[{"bbox_2d": [0, 0, 10, 10], "label": "Cat"}]```'
>>> extra = '```json[{"bbox_2d": [0, 0, 10, 10], "label": "cat"}, {"bbox_2d": [50, 50, 60, 60], "label": "dog"}]```'
>>> OdWeightedSumReward()([hit, extra, "None."], solution=[gt] * 3)
[1.0, 0.9249999999999999, 0.0]
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from vlmr1_trainer.rewards._text import clean_text, iou_pix, json_blocks
from vlmr1_trainer.rewards.registry import BadGroundTruthError, Reward, register


def _first_json_list(text: str) -> list[Any] | None:
    blocks = json_blocks(clean_text(text))
    if not blocks or not blocks[0].strip():
        return None
    return list(json.loads(blocks[0].strip()))


@functools.lru_cache(maxsize=4096)
def _ground_truth(cleaned_solution: str) -> list[Any]:
    # Cached: GRPO scores every solution once per generation of its group. Callers only read it.
    try:
        return _first_json_list(cleaned_solution) or []
    except (ValueError, TypeError, RecursionError) as exc:
        raise BadGroundTruthError(f"the solution's json block is invalid: {exc}") from exc


def _safe_iou(pred: Any, gt: Any) -> float:
    try:
        return iou_pix(pred["bbox_2d"], gt["bbox_2d"])
    except (TypeError, KeyError, IndexError, ValueError, ZeroDivisionError, OverflowError):
        return 0.0


def _label(item: Any) -> str:
    label = item.get("label") if isinstance(item, dict) else None
    return label if isinstance(label, str) else ""


def weighted_sum_score(pred: list[Any], gt: list[Any]) -> float:
    if not gt:
        return 1.0 if not pred else 0.0
    if not pred:
        return 0.0
    # VLM-R1 repeatedly takes the first maximum (pred-major scan, strict ">") among the
    # unmatched pairs and stops below 0.5. Visiting the pairs with IoU >= 0.5 sorted by
    # (-IoU, pred, gt) and skipping taken ones picks the same pairs in the same order.
    pairs = []
    for p, pred_item in enumerate(pred):
        for g, gt_item in enumerate(gt):
            iou = _safe_iou(pred_item, gt_item)
            if iou >= 0.5:  # False for NaN, which never wins VLM-R1's scan
                pairs.append((-iou, p, g))
    pairs.sort()
    taken_pred: set[int] = set()
    taken_gt: set[int] = set()
    contributions: list[float] = []
    for neg_iou, p, g in pairs:
        if p in taken_pred or g in taken_gt:
            continue
        taken_pred.add(p)
        taken_gt.add(g)
        contributions.append(-neg_iou if _label(pred[p]).lower() == _label(gt[g]).lower() else 0.0)
    position = sum(contributions) / len(gt) if contributions else 0.0
    miss = (len(gt) - len(contributions)) / len(gt)
    false_alarm = (len(pred) - len(contributions)) / len(pred)
    completeness = 1.0 - (miss + false_alarm) / 2.0
    label_score = 0.0  # VLM-R1 weighs its label term with 0.0
    return (0.7 * position + 0.0 * label_score + 0.3 * completeness) / (0.7 + 0.0 + 0.3)


@register("od_weighted_sum")
class OdWeightedSumReward(Reward):
    """VLM-R1's ``weighted_sum`` detection reward, in [0, 1]."""

    def score(self, completion: str, sample: Mapping[str, Any]) -> float | None:
        solution = sample.get("solution")
        if not isinstance(solution, str):
            raise BadGroundTruthError("solution must be a string")
        c, s = clean_text(completion), clean_text(solution)
        if s == "none":
            return 1.0 if c == "none" else 0.0
        gt = _ground_truth(s)
        try:
            pred = _first_json_list(c) or []
        except (ValueError, TypeError, RecursionError):
            pred = []
        return weighted_sum_score(pred, gt)
