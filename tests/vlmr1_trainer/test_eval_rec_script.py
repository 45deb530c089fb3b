"""VLM-R1's evaluation-script parsing (src/eval/test_rec_r1.py, test_rec_r1_internvl.py,
test_od_r1.py): a table of cases per rule, and hypothesis against the scripts' own regexes,
restated here as the oracle, so the linear-time parser cannot drift from them."""

from __future__ import annotations

import doctest
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmr1_trainer.evaluation import rec_eval
from vlmr1_trainer.evaluation.rec_eval import od_script_box, rec_script_box, script_iou
from vlmr1_trainer.rewards.rec import RecIouReward

# The scripts' patterns (the specification, not the implementation).
ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
REC_R1 = re.compile(r"\{.*\[(\d+),\s*(\d+),\s*(\d+),\s*(\d+)]\s*.*\}", re.DOTALL)
REC_R1_INTERNVL = re.compile(r"\[(\d+),\s*(\d+),\s*(\d+),\s*(\d+)]", re.DOTALL)
OD_R1 = re.compile(r"```json(.*?)```", re.DOTALL)


def oracle(content: str, pattern: re.Pattern[str]) -> list[int] | None:
    block = ANSWER.search(content)
    if block is None:
        return None
    match = pattern.search(block.group(1).strip())
    return [int(g) for g in match.groups()] if match else None


def test_docstring_examples() -> None:
    result = doctest.testmod(rec_eval)
    assert result.attempted > 0 and result.failed == 0


# (completion, test_rec_r1 box, test_rec_r1_internvl box)
CASES: list[tuple[str, list[int] | None, list[int] | None]] = [
    ('<answer>{"bbox_2d": [1,2,3,4]}</answer>', [1, 2, 3, 4], [1, 2, 3, 4]),
    ("<answer>[1,2,3,4]</answer>", None, [1, 2, 3, 4]),  # no braces
    ("<answer>{[1,2,3,4]}</answer>", [1, 2, 3, 4], [1, 2, 3, 4]),
    ('<answer>[{"bbox_2d": [1, 2, 3, 4], "label": "dog"}]</answer>', [1, 2, 3, 4], [1, 2, 3, 4]),
    ('<answer>{"a": [1,2,3,4], "b": [5,6,7,8]}</answer>', [5, 6, 7, 8], [1, 2, 3, 4]),  # last vs first
    ('<answer>{"a": [1,2,3,4]} {"b": [5,6,7,8]}</answer>', [5, 6, 7, 8], [1, 2, 3, 4]),  # across objects
    ('<answer>[9,9,9,9] {"a": [1,2,3,4]}</answer>', [1, 2, 3, 4], [9, 9, 9, 9]),  # before the first {
    ('<answer>{"a": [1,2,3,4]} [9,9,9,9]</answer>', [1, 2, 3, 4], [1, 2, 3, 4]),  # after the last }
    ("<answer>[1,2,3,4] {x}</answer>", None, [1, 2, 3, 4]),
    ("<answer>{x} [1,2,3,4]</answer>", None, [1, 2, 3, 4]),
    ("<answer>} [1,2,3,4] {</answer>", None, [1, 2, 3, 4]),
    ('<answer>{\n  "bbox_2d": [1, 2,\n 3,\t4]\n}</answer>', [1, 2, 3, 4], [1, 2, 3, 4]),  # newlines
    ('<answer>{"b": [ 1,2,3,4]}</answer>', None, None),  # space after [
    ('<answer>{"b": [1 ,2,3,4]}</answer>', None, None),  # space before a comma
    ('<answer>{"b": [1,2,3,4 ]}</answer>', None, None),  # space before ]
    ('<answer>{"b": [1.5,2,3,4]}</answer>', None, None),
    ('<answer>{"b": [-1,2,3,4]}</answer>', None, None),
    ('<answer>{"b": [1,2,3,4,5]}</answer>', None, None),
    ('<answer>{"b": [٣,2,3,4]}</answer>', [3, 2, 3, 4], [3, 2, 3, 4]),  # Unicode digits, as int() reads them
    ('<answer>{"a": [0,0,1,1]}</answer><answer>{"a": [5,6,7,8]}</answer>', [0, 0, 1, 1], [0, 0, 1, 1]),  # first
    ('{"bbox_2d": [1,2,3,4]}', None, None),  # no answer block
    ('<answer>{"bbox_2d": [1,2,3,4]}', None, None),  # unclosed
    ('<think><answer>{"a": [1,2,3,4]}</think></answer>', [1, 2, 3, 4], [1, 2, 3, 4]),
]


@pytest.mark.parametrize(("completion", "rec_r1", "internvl"), CASES)
def test_rec_script_cases(completion: str, rec_r1: Any, internvl: Any) -> None:
    assert rec_script_box(completion).box == rec_r1
    assert rec_script_box(completion, "test_rec_r1_internvl").box == internvl
    assert rec_r1 == oracle(completion, REC_R1) and internvl == oracle(completion, REC_R1_INTERNVL)


def test_the_eval_script_and_the_training_reward_disagree_where_documented() -> None:
    """The reward takes the first literal, braces or not; the script the last inside braces."""
    reward = RecIouReward()
    for completion, script, first in [
        ("<answer>[1,2,3,4]</answer>", None, [1, 2, 3, 4]),
        ('<answer>{"a": [1,2,3,4], "b": [5,6,7,8]}</answer>', [5, 6, 7, 8], [1, 2, 3, 4]),
    ]:
        assert rec_script_box(completion).box == script
        assert reward.predicted_box(completion, {}) == first


TOKENS = ["{", "}", "[", "]", ",", ", ", " ", "\n", "1", "23", "٣", "[1,2,3,4]", "[5, 6,7,\n8]", "[0,0,1,1]",
          "<answer>", "</answer>", '"bbox_2d": ', "x", "-", "."]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=24).map("".join))
def test_rec_parsers_equal_the_scripts_regexes(text: str) -> None:
    for completion in (text, f"<answer>{text}</answer>"):
        assert rec_script_box(completion).box == oracle(completion, REC_R1)
        assert rec_script_box(completion, "test_rec_r1_internvl").box == oracle(completion, REC_R1_INTERNVL)


def od_oracle(content: str) -> Any:
    match = OD_R1.search(content)
    text = match.group(1).strip() if match else None
    if not text:
        return None
    try:
        return json.loads(text)[0]["bbox_2d"]
    except Exception:  # the script's bare except
        return None


# (completion, box)
OD_CASES: list[tuple[str, Any]] = [
    ('```json\n[{"bbox_2d": [1, 2, 3, 4], "label": "a"}]\n```', [1, 2, 3, 4]),
    ('<answer>```json [{"bbox_2d": [1.5, 2, 3, 4]}, {"bbox_2d": [9, 9, 9, 9]}] ```</answer>', [1.5, 2, 3, 4]),
    ('```json [{"bbox_2d": [1, 2, 3, 4]}] ``` ```json [{"bbox_2d": [5, 6, 7, 8]}] ```', [1, 2, 3, 4]),  # first
    ('```json [{"label": "a"}] ```', None),
    ('```json {"bbox_2d": [1, 2, 3, 4]} ```', None),  # an object: no item 0
    ('```json "abc" ```', None),
    ("```json [] ```", None),
    ("```json ```", None),
    ('```json [{"bbox_2d": [1, 2, 3, 4]}', None),  # unclosed fence
    ('```JSON [{"bbox_2d": [1, 2, 3, 4]}] ```', None),  # the tag is case-sensitive
    ('``` [{"bbox_2d": [1, 2, 3, 4]}] ```', None),
    ('```json [{"bbox_2d": "left"}] ```', "left"),  # taken as is; the IoU then fails: a miss
]


@pytest.mark.parametrize(("completion", "box"), OD_CASES)
def test_od_script_cases(completion: str, box: Any) -> None:
    assert od_script_box(completion).box == box == od_oracle(completion)


@pytest.mark.parametrize(
    ("box", "gt", "sizes", "used", "iou"),
    [
        (None, [0, 0, 10, 20], (None, None), [0, 0, 0, 0], 0.0),  # no box: [0, 0, 0, 0], never a hit
        ([0, 0, 10, 10], [0, 0, 10, 20], (None, None), [0, 0, 10, 10], 0.5),
        ([0, 0, 28, 28], [0, 0, 10, 20], ([10, 20], [28, 28]), [0.0, 0.0, 10.0, 20.0], 1.0),
        ([0, 0, 0, 0], [0, 0, 0, 0], (None, None), [0, 0, 0, 0], 0.0),  # zero union (VLM-R1 crashes): a miss
        (["a", 0, 1, 1], [0, 0, 10, 20], (None, None), ["a", 0, 1, 1], 0.0),
    ],
)
def test_script_iou(box: Any, gt: Any, sizes: tuple[Any, Any], used: Any, iou: float) -> None:
    assert script_iou(box, gt, *sizes) == (used, iou)


def test_rescale_divides_first_in_the_values_own_types() -> None:
    """x / W_in * W_orig with Python ints, as the script's resize_bbox: correctly rounded division."""
    big = 10**18 + 192  # where converting to float first would round twice and differ
    used, _ = script_iou([big, 0, big, 1], [0, 0, 1, 1], [3, 1], [7, 1])
    assert used[0] == big / 7 * 3 == 4.285714285714286e17
    assert float(big) / 7.0 * 3.0 == 4.285714285714287e17
