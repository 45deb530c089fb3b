"""REC rewards: ``rec_iou`` (VLM-R1's iou_reward) and ``rec_acc`` (IoU >= 0.5, the evaluation criterion).

The ground truth is the last answer block of the solution parsed as JSON
(``[x1, y1, x2, y2]`` in original-image pixels); the prediction is the first box
literal of the first answer block of the completion. With ``image_size`` and
``input_size`` columns (``[W, H]`` each) the predicted box is mapped from the
Qwen2.5-VL model-input size back to the original image, as VLM-R1's Qwen module does.

>>> iou = RecIouReward()
>>> iou(["<answer>[0,0,10,10]</answer>", "<answer>[0, 0, 5.5, 10]</answer>", "no box"],
...     solution=["<answer> [0, 0, 10, 20] </answer>"] * 3)
[0.5, 0.0, 0.0]
>>> iou(["<answer>[0,0,28,28]</answer>"], solution=["<answer> [0, 0, 100, 50] </answer>"],
...     image_size=[[100, 50]], input_size=[[28, 28]])
[1.0]
>>> RecAccReward()(["<answer>[0,0,10,10]</answer>", "<answer>[0,0,10,9]</answer>"],
...     solution=["<answer> [0, 0, 10, 20] </answer>"] * 2)
[1.0, 0.0]
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from vlmr1_trainer.rewards._text import BOX_RE, first_block, iou_pix, last_block
from vlmr1_trainer.rewards.registry import BadGroundTruthError, Reward, register

# Opt-in (``lenient_boxes: true``): signed decimals with free spacing, which VLM-R1's
# integer-only literal rejects. Bounded repetitions keep the scan linear.
_LENIENT_NUM = r"\s*(-?\d{1,20}(?:\.\d{1,20})?)\s*"
_LENIENT_BOX_RE = re.compile(r"\[" + ",".join([_LENIENT_NUM] * 4) + r"\]")


def _size(value: Any, column: str) -> tuple[float, float]:
    # A multi-image sample carries one size per image; VLM-R1 uses the first image.
    if isinstance(value, list | tuple) and value and isinstance(value[0], list | tuple):
        value = value[0]
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise BadGroundTruthError(f"column {column} must be [width, height] with positive numbers, got {value!r}")
    return value[0], value[1]


def ground_truth_box(solution: Any) -> Any:
    """The JSON value of the solution's last answer block; None-worthy data errors raise.

    VLM-R1's REC solutions are a bare ``[x1, y1, x2, y2]``. A sample written as a whole answer
    turn for SFT as well (``<answer>{"bbox_2d": [...]}</answer>``, the JSON the REC prompt asks
    for) holds the box under ``bbox_2d``, alone or as a one-element list: that box is the value.

    >>> ground_truth_box('<answer> [1, 2, 3, 4] </answer>')
    [1, 2, 3, 4]
    >>> ground_truth_box('<answer>{"bbox_2d": [1, 2, 3, 4]}</answer>')
    [1, 2, 3, 4]
    """
    if not isinstance(solution, str):
        raise BadGroundTruthError(f"solution must be a string, got {type(solution).__name__}")
    block = last_block(solution)
    if block is None:
        raise BadGroundTruthError("the solution has no <answer>…</answer> block")
    try:
        value = json.loads(block.strip())
    except (ValueError, RecursionError) as exc:
        raise BadGroundTruthError(f"the solution's answer is not valid JSON: {exc}") from exc
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        value = value[0]
    if isinstance(value, dict) and "bbox_2d" in value:
        return value["bbox_2d"]
    return value


@register("rec_iou")
class RecIouReward(Reward):
    """Continuous pixel-inclusive IoU of the predicted and ground-truth boxes, in [0, 1].

    Parameters:
        lenient_boxes: also accept signed and decimal coordinates and spaces inside the
            brackets (VLM-R1 accepts only ``[int,int,int,int]``; off by default so scores
            stay comparable with VLM-R1's).
    """

    columns = ("solution", "image_size", "input_size")

    def __init__(self, lenient_boxes: bool = False) -> None:
        super().__init__()
        self.lenient_boxes = lenient_boxes

    def predicted_box(self, completion: str, sample: Mapping[str, Any]) -> list[Any] | None:
        """The completion's box as the reward reads it, in original-image pixels; None without one.

        Malformed ``image_size``/``input_size`` columns raise BadGroundTruthError.

        >>> RecIouReward().predicted_box("<answer>[14,0,28,28] [0,0,1,1]</answer>",
        ...     {"image_size": [[100, 50], [9, 9]], "input_size": [28, 28]})
        [50.0, 0.0, 100.0, 50.0]
        >>> RecIouReward().predicted_box("<answer>[1.5,0,28,28]</answer>", {}) is None
        True
        """
        rescale = sample.get("image_size") is not None and sample.get("input_size") is not None
        if rescale:
            w_orig, h_orig = _size(sample["image_size"], "image_size")
            w_in, h_in = _size(sample["input_size"], "input_size")
        block = first_block(completion)
        if block is None:
            return None
        match = (_LENIENT_BOX_RE if self.lenient_boxes else BOX_RE).search(block.strip())
        if match is None:
            return None
        try:
            if self.lenient_boxes:
                box: list[Any] = [float(g) if "." in g else int(g) for g in match.groups()]
            else:
                box = [int(g) for g in match.groups()]
            if rescale:
                # Divide first, in float64, as VLM-R1 does; never applied without the columns
                # because x / W * W is not always x and iou_pix's strict tests would show it.
                box = [box[0] / w_in * w_orig, box[1] / h_in * h_orig, box[2] / w_in * w_orig, box[3] / h_in * h_orig]
        except (ValueError, ZeroDivisionError, OverflowError):
            return None  # a literal too large for a float: no usable box, scored 0.0
        return box

    def iou(self, completion: str, sample: Mapping[str, Any]) -> float | None:
        gt = ground_truth_box(sample.get("solution"))
        box = self.predicted_box(completion, sample)
        if box is None:
            return 0.0
        try:
            return iou_pix(box, gt)
        except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, OverflowError):
            # Includes ground truths that are JSON but not a 4-list: VLM-R1 scores them 0.0.
            return 0.0

    def score(self, completion: str, sample: Mapping[str, Any]) -> float | None:
        return self.iou(completion, sample)


@register("rec_acc")
class RecAccReward(RecIouReward):
    """1.0 when ``rec_iou`` is at least ``threshold`` (0.5: REC Acc@IoU0.5), else 0.0."""

    def __init__(self, lenient_boxes: bool = False, threshold: float = 0.5) -> None:
        super().__init__(lenient_boxes=lenient_boxes)
        self.threshold = threshold

    def score(self, completion: str, sample: Mapping[str, Any]) -> float | None:
        value = self.iou(completion, sample)
        if value is None:
            return None
        return 1.0 if value >= self.threshold else 0.0
