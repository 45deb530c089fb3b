"""Detection rewards on COCO AP: ``od_ap``, ``od_ap50`` and ``od_length`` (VLM-R1's odLength).

The answer is the last ``<answer>`` block of the completion; inside it, the last
```` ```json ```` fence holds a list of ``{"bbox_2d": [x1, y1, x2, y2], "label": …}``.
Predictions with a label not in the ground truth are dropped (not false positives),
every prediction scores 1.0 so list order is rank order, and at most 100 per label
count — all as in VLM-R1, which runs pycocotools on a one-image dataset per sample.
``coco.py`` computes the same numbers with numpy.

>>> gt = '<answer> ```json\\n[{"bbox_2d": [0, 0, 10, 10], "label": "cat"}]\\n``` </answer>'
>>> hit = '<answer>```json[{"bbox_2d": [0, 0, 10, 10], "label": "cat"}]```</answer>'
>>> two = ('<answer>```json[{"bbox_2d": [0, 0, 10, 10], "label": "cat"},'
...        ' {"bbox_2d": [5, 5, 9, 9], "label": "cat"}]```</answer>')
>>> [round(v, 9) for v in OdApReward()([hit, two, "no answer"], solution=[gt] * 3)]
[1.0, 1.0, 0.0]
>>> [round(v, 9) for v in OdLengthReward()([hit, two], solution=[gt] * 2)]
[1.0, 0.5]
>>> OdAp50Reward()(["<answer>None</answer>"], solution=["<answer> None </answer>"])
[1.0]
"""

from __future__ import annotations

import functools
import json
from collections.abc import Hashable, Mapping
from typing import Any

from vlmr1_trainer.rewards._text import first_block, json_blocks, last_block
from vlmr1_trainer.rewards.coco import Box, coco_ap, coco_ap50
from vlmr1_trainer.rewards.registry import BadGroundTruthError, Reward, register


def last_json_list(text: str) -> list[Any] | None:
    """The last json fence decoded and iterated; None without a fence or when it is empty.

    Invalid JSON raises ValueError, a scalar TypeError (callers decide what that means).

    >>> last_json_list('```json [1] ``` ```json [{"label": "cat"}] ```')
    [{'label': 'cat'}]
    >>> last_json_list("[1]") is None
    True
    """
    blocks = json_blocks(text)
    if not blocks:
        return None
    content = blocks[-1].strip()
    if not content:
        return None
    return list(json.loads(content))


def _gt_boxes(items: list[Any]) -> list[Box]:
    boxes: list[Box] = []
    for item in items:
        try:
            label, bbox = item["label"], item["bbox_2d"]
            hash(label)
            x1, y1, x2, y2 = bbox[0], bbox[1], bbox[2], bbox[3]
            w, h = x2 - x1, y2 - y1
            boxes.append((label, [float(x1), float(y1), float(w), float(h)], (x2 - x1) * (y2 - y1)))
        except (TypeError, KeyError, IndexError, OverflowError) as exc:
            raise BadGroundTruthError(
                f"ground-truth item {item!r} is not {{'label': …, 'bbox_2d': [x1, y1, x2, y2]}}"
            ) from exc
    return boxes


def prediction_boxes(items: list[Any], labels: set[Hashable] | None = None) -> list[Box]:
    """COCO boxes of the well-formed predicted items whose label is in ``labels`` (any label when None).

    >>> prediction_boxes([{"bbox_2d": [1, 2, 4, 6], "label": "cat"}, {"bbox_2d": [1, 2], "label": "cat"},
    ...     {"bbox_2d": [0, 0, 1, 1], "label": "dog"}, "cat"], {"cat"})
    [('cat', [1.0, 2.0, 3.0, 4.0], 12)]
    """
    boxes: list[Box] = []
    for item in items:
        # Anything malformed is dropped silently, exactly as VLM-R1 does.
        if not isinstance(item, dict) or "label" not in item:
            continue
        label = item["label"]
        try:
            if labels is None:
                hash(label)  # an unhashable label (a list) cannot be a COCO category: dropped
            elif label not in labels:
                continue
            bbox = item["bbox_2d"]
            x1, y1 = bbox[0], bbox[1]
            w, h = bbox[2] - x1, bbox[3] - y1
            boxes.append((label, [float(x1), float(y1), float(w), float(h)], w * h))
        except (TypeError, KeyError, IndexError, OverflowError):
            continue
    return boxes


@functools.lru_cache(maxsize=4096)
def ground_truth_boxes(gt_text: str) -> tuple[list[Any], list[Box]]:
    """The items and COCO boxes of a stripped GT answer block (none without a fence); bad ones raise.

    >>> ground_truth_boxes('```json [{"bbox_2d": [0, 0, 10, 5], "label": "cat"}] ```')
    ([{'bbox_2d': [0, 0, 10, 5], 'label': 'cat'}], [('cat', [0.0, 0.0, 10.0, 5.0], 50)])
    """
    # Cached: GRPO scores every solution once per generation of its group. Callers only read it.
    try:
        items = last_json_list(gt_text) or []
    except (ValueError, TypeError, RecursionError) as exc:
        raise BadGroundTruthError(f"the solution's json block is invalid: {exc}") from exc
    return items, _gt_boxes(items)


class _DetectionReward(Reward):
    value_range = (-1.0, 1.0)

    def metric(self, gt: list[Box], pred: list[Box]) -> float:
        raise NotImplementedError

    def score(self, completion: str, sample: Mapping[str, Any]) -> float | None:
        pred_block = last_block(completion)
        if pred_block is None:
            return 0.0
        solution = sample.get("solution")
        if not isinstance(solution, str):
            raise BadGroundTruthError("solution must be a string")
        gt_block = first_block(solution)
        pred_text = pred_block.strip()
        if gt_block is not None and gt_block.strip() == "None" and pred_text == "None":
            return 1.0
        if gt_block is None:
            raise BadGroundTruthError("the solution has no <answer>…</answer> block")
        gt_items, gt = ground_truth_boxes(gt_block.strip())
        try:
            pred_items = last_json_list(pred_text) or []
        except (ValueError, TypeError, RecursionError):
            pred_items = []
        if not gt_items or not pred_items:
            base = 1.0 if not gt_items and not pred_items else 0.0
        else:
            kept = prediction_boxes(pred_items, {g[0] for g in gt})
            base = self.metric(gt, kept) if kept else 0.0
        return base * self.length_factor(len(gt_items), len(pred_items))

    def length_factor(self, n_gt: int, n_pred: int) -> float:
        return 1.0


@register("od_ap")
class OdApReward(_DetectionReward):
    """COCO AP@[.50:.95] of the predicted boxes (VLM-R1 ``od_ap``); -1.0 when every GT box is ignored."""

    cpu_bound = True  # COCO matching and accumulation over ten IoU thresholds per sample

    def metric(self, gt: list[Box], pred: list[Box]) -> float:
        return coco_ap(gt, pred)[0]


@register("od_ap50")
class OdAp50Reward(_DetectionReward):
    """COCO AP@.50 of the predicted boxes (VLM-R1 ``od_ap50``)."""

    cpu_bound = True  # COCO matching and accumulation per sample

    def metric(self, gt: list[Box], pred: list[Box]) -> float:
        return coco_ap50(gt, pred)


@register("od_length")
class OdLengthReward(OdApReward):
    """``od_ap`` times ``len(gt) / len(pred)`` when there are more predicted items than GT (VLM-R1 ``odLength``).

    The lengths are the raw list lengths, invalid and dropped items included.
    """

    def length_factor(self, n_gt: int, n_pred: int) -> float:
        return 1.0 if n_gt >= n_pred else n_gt / n_pred
