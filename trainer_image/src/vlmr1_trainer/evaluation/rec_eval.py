"""Box answers read the way VLM-R1's evaluation scripts read them, not the way its rewards do.

VLM-R1 publishes REC accuracy from ``src/eval/test_rec_r1.py`` (Qwen2.5-VL) and
``src/eval/test_rec_r1_internvl.py`` (InternVL), and a single-box accuracy for its detection
model from ``src/eval/test_od_r1.py``. Their parsing differs from the training reward
``rec_iou`` (``vlmr1_trainer.rewards.rec``), so ``vlmr1 eval`` follows the scripts for the
headline metrics and keeps the reward's reading as ``rec_acc_reward``.

**test_rec_r1.py** (``rec_acc``, every family but InternVL):

1. The answer is the first ``<answer>…</answer>`` block (non-greedy, across newlines),
   stripped. No block: the box ``[0, 0, 0, 0]``.
2. Inside it the script searches ``{``, anything, a box literal, optional whitespace,
   anything, ``}`` (across newlines, greedy). So a box counts only between a ``{`` and a
   later ``}``; a bare ``[x1, y1, x2, y2]`` is no answer. Because the gap after ``{`` is
   greedy, the box taken is the **last** literal that starts after the first ``{`` and ends
   before the last ``}``. The literal is the rewards' one: ``[``, four unsigned integers
   (Unicode digits), ``,`` plus optional whitespace between them, ``]``; no space after ``[``
   or before a comma, no sign, no decimal point. No such box: ``[0, 0, 0, 0]``.
3. The box is **always** mapped from the model-input size (``14 * image_grid_thw``) to the
   original image, dividing first: ``x / W_in * W_orig`` (vlmr1: the family's
   ``image_size``/``input_size`` columns, so only where the family adds them).
4. Correct when the pixel-inclusive IoU (the rewards' ``iou_pix``) is **greater than** 0.5;
   exactly 0.5 is a miss. ``[0, 0, 0, 0]`` never overlaps, so it is always a miss.

The training reward differs in each step: it takes the **first** literal anywhere in the
block (no braces needed) and counts IoU **>= 0.5** (``rec_acc`` reward). On answers that
put several boxes in one JSON object, or write a bare box, the two disagree.

**test_rec_r1_internvl.py** (``rec_acc`` for the InternVL family): the first literal in the
first answer block, no braces needed (the reward's reading), no rescale, IoU > 0.5. VLM-R1's
InternVL data holds ground truth already in InternVL's 0-1000 frame; vlmr1's holds original
pixels and maps the answer there with the family's columns, so the IoU is computed in
original pixels (equal up to the pixel-inclusive IoU's +1 terms).

**test_od_r1.py** (``od_acc``, OVD): the first `````json`` fence of the **whole** completion
(no answer block needed), stripped; empty, or no fence: ``[0, 0, 0, 0]``. Its JSON value's
first item's ``bbox_2d`` is the box (any failure: ``[0, 0, 0, 0]``); no rescale. Correct
when IoU > 0.5 with the single ground-truth box. (VLM-R1's published OVD figures come from
OVDEval's own tooling, which vlmr1 does not reproduce; ``ap``/``ap50`` are COCO's.)

Errors that make VLM-R1's scripts crash (a box whose coordinates are not numbers, a zero
union) score a miss here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from vlmr1_trainer.rewards._text import BOX_RE, first_block, iou_pix, json_blocks

__all__ = [
    "EMPTY_BOX",
    "BoxReading",
    "RecScript",
    "od_script_box",
    "rec_script_box",
    "rec_script_for",
    "script_iou",
]

RecScript = Literal["test_rec_r1", "test_rec_r1_internvl"]
"""Which of VLM-R1's REC evaluation scripts a family's answers are read with."""

EMPTY_BOX: list[int] = [0, 0, 0, 0]
"""What VLM-R1's scripts score when they find no box: never a hit."""

THRESHOLD = 0.5
"""VLM-R1's scripts count IoU strictly above this."""


@dataclass(frozen=True)
class BoxReading:
    """A box the script found, or why there is none (``box`` is then None)."""

    box: list[Any] | None
    error: str | None = None


def rec_script_for(family: str | None) -> RecScript:
    """The script VLM-R1 evaluates a family's REC answers with (InternVL has its own).

    >>> rec_script_for("internvl"), rec_script_for("qwen2.5-vl"), rec_script_for(None)
    ('test_rec_r1_internvl', 'test_rec_r1', 'test_rec_r1')
    """
    return "test_rec_r1_internvl" if family == "internvl" else "test_rec_r1"


def rec_script_box(completion: str, script: RecScript = "test_rec_r1") -> BoxReading:
    """The integer box the REC script reads from ``completion`` (model frame, not rescaled).

    >>> rec_script_box('<answer>{"bbox_2d": [1,2,3,4], "also": [5,6,7,8]}</answer>').box
    [5, 6, 7, 8]
    >>> rec_script_box("<answer>[1,2,3,4]</answer>").error
    'no [x1, y1, x2, y2] integer box between { and } in the first answer block'
    >>> rec_script_box("<answer>[1,2,3,4]</answer>", "test_rec_r1_internvl").box
    [1, 2, 3, 4]
    """
    block = first_block(completion)
    if block is None:
        return BoxReading(None, "no <answer>…</answer> block")
    text = block.strip()
    if script == "test_rec_r1_internvl":
        match = BOX_RE.search(text)
        if match is None:
            return BoxReading(None, "no [x1, y1, x2, y2] integer box in the first answer block")
        return BoxReading([int(g) for g in match.groups()])
    # The script's greedy `{.*BOX\s*.*}` equals: the last literal after the first "{" that
    # ends before the last "}". Written with find/rfind so a long answer costs linear time.
    opening, closing = text.find("{"), text.rfind("}")
    found = None
    if opening >= 0:
        for match in BOX_RE.finditer(text, opening + 1):
            if match.end() > closing:
                break
            found = match
    if found is None:
        return BoxReading(None, "no [x1, y1, x2, y2] integer box between { and } in the first answer block")
    return BoxReading([int(g) for g in found.groups()])


def od_script_box(completion: str) -> BoxReading:
    """The box test_od_r1.py reads: the first item's ``bbox_2d`` of the first json fence.

    >>> od_script_box('<answer>```json\\n[{"bbox_2d": [1, 2, 30, 40], "label": "cat"}]\\n```</answer>').box
    [1, 2, 30, 40]
    >>> od_script_box("```json\\n{}\\n```").error
    'the first ```json fence has no first item with a bbox_2d'
    """
    blocks = json_blocks(completion)
    text = blocks[0].strip() if blocks else ""
    if not text:
        return BoxReading(None, "no ```json fence" if not blocks else "the first ```json fence is empty")
    try:
        box = json.loads(text)[0]["bbox_2d"]
    except (ValueError, RecursionError, LookupError, TypeError):
        # ValueError: bad JSON; Lookup/TypeError: no first item, or no bbox_2d in it.
        return BoxReading(None, "the first ```json fence has no first item with a bbox_2d")
    return BoxReading(box)


def script_iou(
    box: Sequence[Any] | None, gt: Any, image_size: Any = None, input_size: Any = None
) -> tuple[list[Any], float]:
    """(the box compared, its IoU with ``gt``): ``[0, 0, 0, 0]`` for no box, rescaled from
    ``input_size`` to ``image_size`` when both are given (``[W, H]``, or one per image: the
    first counts). Any arithmetic failure is IoU 0.0.

    >>> script_iou([0, 0, 28, 28], [0, 0, 10, 20], [10, 20], [28, 28])
    ([0.0, 0.0, 10.0, 20.0], 1.0)
    >>> script_iou(None, [0, 0, 10, 20])
    ([0, 0, 0, 0], 0.0)
    """
    used: list[Any] = list(box) if box is not None else list(EMPTY_BOX)
    try:
        if image_size is not None and input_size is not None:
            (w_orig, h_orig), (w_in, h_in) = _first(image_size), _first(input_size)
            # In the values' own types, dividing first, as the script does: Python's int / int
            # is correctly rounded where float(x) / float(w) would round twice.
            used = [used[0] / w_in * w_orig, used[1] / h_in * h_orig, used[2] / w_in * w_orig, used[3] / h_in * h_orig]
        return used, float(iou_pix(used, gt))
    except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, OverflowError):
        return used, 0.0


def _first(size: Any) -> Any:
    # A multi-image sample carries one [W, H] per image; VLM-R1 uses the first image.
    if isinstance(size, list | tuple) and size and isinstance(size[0], list | tuple):
        return size[0]
    return size
