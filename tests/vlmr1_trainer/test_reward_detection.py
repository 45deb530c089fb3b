"""Tables of exact values: od_ap, od_ap50, od_length, od_weighted_sum."""

# Case tables keep one case per line.
# ruff: noqa: E501

from __future__ import annotations

import json
from typing import Any

import pytest

from vlmr1_trainer import rewards


def fence(items: Any) -> str:
    return "```json\n" + json.dumps(items) + "\n```"


def answer(items: Any) -> str:
    return f"<answer>{fence(items)}</answer>"


def sol(items: Any) -> str:
    return f"<answer> {fence(items)} </answer>"


CAT = {"bbox_2d": [0, 0, 100, 100], "label": "cat"}
DOG = {"bbox_2d": [200, 200, 300, 300], "label": "dog"}
MISS = {"bbox_2d": [500, 500, 600, 600], "label": "cat"}
GT2 = sol([CAT, DOG])
GT1 = sol([CAT])
NONE = "<answer> None </answer>"


class TestOdAp:
    CASES = [
        (answer([CAT, DOG]), GT2, 1.0),
        (answer([DOG, CAT]), GT2, 1.0),
        (answer([CAT]), GT2, 0.5),
        (answer([CAT, DOG, {"bbox_2d": [0, 0, 5, 5], "label": "bird"}]), GT2, 1.0),
        (answer([CAT, CAT, DOG]), GT2, 1.0),
        (answer([MISS, CAT, DOG]), GT2, 0.75),
        (answer([{"bbox_2d": [0, 0, 100, 80], "label": "cat"}]), GT1, 0.7),
        (answer([{"bbox_2d": [0.0, 0.0, 100.0, 100.0], "label": "cat"}]), GT1, 1.0),
        (answer([{"bbox_2d": [0, 0, 100, 100, 7], "label": "cat"}]), GT1, 1.0),
        (answer([{"bbox_2d": [0, 0, 100], "label": "cat"}]), GT1, 0.0),
        (answer([{"bbox_2d": ["0", 0, 100, 100], "label": "cat"}]), GT1, 0.0),
        (answer([{"box": [0, 0, 100, 100], "label": "cat"}]), GT1, 0.0),
        (answer([{"bbox_2d": [0, 0, 100, 100], "label": "Cat"}]), GT1, 0.0),
        (answer([None, 3, "cat", CAT]), GT1, 1.0),
        (answer([]), GT1, 0.0),
        (answer({"cat": [0, 0, 100, 100]}), GT1, 0.0),
        (answer("cat"), GT1, 0.0),
        (answer(None), GT1, 0.0),
        ("<answer>```json\n[" + json.dumps(CAT) + ",]\n```</answer>", GT1, 0.0),
        ("<answer>```json\n[{'bbox_2d': [0, 0, 100, 100], 'label': 'cat'}]\n```</answer>", GT1, 0.0),
        ("<answer>```\n" + json.dumps([CAT]) + "\n```</answer>", GT1, 0.0),
        ("<answer>" + json.dumps([CAT]) + "</answer>", GT1, 0.0),
        (fence([CAT]), GT1, 0.0),
        (answer([CAT]) + "<answer>None</answer>", GT1, 0.0),
        ("<answer>None</answer>" + answer([CAT]), GT1, 1.0),
        ("<answer>" + fence([MISS]) + fence([CAT]) + "</answer>", GT1, 1.0),
        ("<answer>None</answer>", NONE, 1.0),
        ("<answer> none. </answer>", NONE, 1.0),
        ("<answer></answer>", NONE, 1.0),
        ("<answer>" + fence([]) + "</answer>", NONE, 1.0),
        (answer([CAT]), NONE, 0.0),
        ("None", NONE, 0.0),
        (answer([CAT]), sol([]), 0.0),
        (answer([]), sol([]), 1.0),
        # Swapped x corners: negative area, every GT ignored -> COCO's -1.
        (answer([{"bbox_2d": [100, 0, 0, 100], "label": "cat"}]), sol([{"bbox_2d": [100, 0, 0, 100], "label": "cat"}]), -1.0),
        # Both corners swapped: positive area, not ignored, but zero overlap.
        (answer([{"bbox_2d": [100, 100, 0, 0], "label": "cat"}]), sol([{"bbox_2d": [100, 100, 0, 0], "label": "cat"}]), 0.0),
        (answer([{"bbox_2d": [5, 5, 5, 5], "label": "cat"}]), GT1, 0.0),
        ("<answer>" + "x" * 20_000 + "</answer>", GT1, 0.0),
        ("<answer>```json\n" + "[" * 20_000 + "\n```</answer>", GT1, 0.0),
        ("<answer>```json\n[{\"bbox_2d\": [0, 0, 100, 100], \"label\": \"猫\"}]\n```</answer>", sol([{"bbox_2d": [0, 0, 100, 100], "label": "猫"}]), 1.0),
        (answer([CAT]), "<answer> " + fence([CAT]) + " </answer>" + fence([]), 1.0),
        # Malformed ground truth: None.
        (answer([CAT]), fence([CAT]), None),
        (answer([CAT]), "<answer> ```json\n[{]\n``` </answer>", None),
        (answer([CAT]), sol([{"bbox_2d": [0, 0, 100], "label": "cat"}]), None),
        (answer([CAT]), sol([{"bbox_2d": [0, 0, 100, 100], "label": ["cat"]}]), None),
        (answer([CAT]), sol(5), None),
        # A completion without an answer block scores 0.0 before the GT is looked at.
        ("no answer", fence([CAT]), 0.0),
    ]  # fmt: skip

    @pytest.mark.parametrize(("completion", "solution", "expected"), CASES)
    def test_values(self, completion: str, solution: str, expected: float | None) -> None:
        [score] = rewards.build("od_ap")([completion], solution=[solution])
        if expected is None:
            assert score is None
        else:
            assert score == pytest.approx(expected, abs=1e-9)

    def test_only_first_100_predictions_per_label_count(self) -> None:
        many = answer([MISS] * 100 + [CAT])
        assert rewards.build("od_ap")([many], solution=[GT1]) == [0.0]


class TestOdAp50:
    CASES = [
        (answer([CAT, DOG]), GT2, 1.0),
        (answer([{"bbox_2d": [0, 0, 100, 80], "label": "cat"}]), GT1, 1.0),
        (answer([{"bbox_2d": [0, 0, 100, 49], "label": "cat"}]), GT1, 0.0),
        (answer([MISS, CAT]), GT1, 0.5),
        (answer([CAT]), GT2, 0.5),
        ("<answer>None</answer>", NONE, 1.0),
    ]

    @pytest.mark.parametrize(("completion", "solution", "expected"), CASES)
    def test_values(self, completion: str, solution: str, expected: float) -> None:
        [score] = rewards.build("od_ap50")([completion], solution=[solution])
        assert score == pytest.approx(expected, abs=1e-9)


class TestOdLength:
    CASES = [
        (answer([CAT, DOG]), GT2, 1.0),
        (answer([CAT, DOG, MISS, MISS]), GT2, 0.5),
        (answer([CAT, DOG, None, "junk"]), GT2, 0.5),
        (answer([CAT]), GT2, 0.5),
        (answer([CAT, CAT, CAT]), GT1, 1 / 3),
        (answer([{"bbox_2d": [100, 0, 0, 100], "label": "cat"}] * 2), sol([{"bbox_2d": [100, 0, 0, 100], "label": "cat"}]), -0.5),
        ("<answer>None</answer>", NONE, 1.0),
        (answer([CAT]), NONE, 0.0),
    ]  # fmt: skip

    @pytest.mark.parametrize(("completion", "solution", "expected"), CASES)
    def test_values(self, completion: str, solution: str, expected: float) -> None:
        [score] = rewards.build("od_length")([completion], solution=[solution])
        assert score == pytest.approx(expected, abs=1e-9)


SMALL = {"bbox_2d": [0, 0, 10, 10], "label": "cat"}
GTS = sol([SMALL])


class TestOdWeightedSum:
    CASES = [
        (answer([SMALL]), GTS, 1.0),
        (answer([{"bbox_2d": [0, 0, 10, 10], "label": "CAT"}]), GTS, 1.0),
        ('<answer>```JSON\n[{"BBOX_2D": [0, 0, 10, 10], "LABEL": "Cat"}]\n```</answer>', GTS, 1.0),
        (answer([SMALL, {"bbox_2d": [50, 50, 60, 60], "label": "dog"}]), GTS, 0.9249999999999999),
        (answer([{"bbox_2d": [0, 0, 10, 10], "label": "dog"}]), GTS, 0.3),
        (answer([{"bbox_2d": [0, 0, 10, 10]}]), GTS, 0.3),
        (answer([{"bbox_2d": [0, 0, 10, 10], "label": 7}]), GTS, 0.3),
        (answer([{"bbox_2d": [0, 0, 10, 4], "label": "cat"}]), GTS, 0.0),
        (answer([{"bbox_2d": [0, 0, 10, 6], "label": "cat"}]), GTS, 0.7 * 0.6 + 0.3),
        (answer([None, "x", SMALL]), GTS, 0.7 + 0.3 * (1 - (0 + 2 / 3) / 2)),
        (answer([]), GTS, 0.0),
        ("<answer>not json</answer>", GTS, 0.0),
        (fence([SMALL]) + fence([]), GTS, 1.0),
        (fence([]) + fence([SMALL]), GTS, 0.0),
        ("None.", NONE, 1.0),
        ("<answer>none</answer>", NONE, 1.0),
        ("nothing", NONE, 0.0),
        (answer([]), "<answer> no boxes here </answer>", 1.0),
        (answer([SMALL]), "<answer> no boxes here </answer>", 0.0),
        (answer([SMALL]), "<answer> ```json\n[{]\n``` </answer>", None),
    ]  # fmt: skip

    @pytest.mark.parametrize(("completion", "solution", "expected"), CASES)
    def test_values(self, completion: str, solution: str, expected: float | None) -> None:
        [score] = rewards.build("od_weighted_sum")([completion], solution=[solution])
        if expected is None:
            assert score is None
        else:
            assert score == pytest.approx(expected, abs=1e-12)

    def test_greedy_matching_takes_the_best_pair_first(self) -> None:
        gt = sol([{"bbox_2d": [0, 0, 10, 10], "label": "a"}, {"bbox_2d": [0, 0, 10, 8], "label": "b"}])
        pred = answer([{"bbox_2d": [0, 0, 10, 8], "label": "a"}, {"bbox_2d": [0, 0, 10, 10], "label": "a"}])
        # (p0, g1) has IoU 1.0 first in scan order, labels a/b: 0; then (p1, g0) IoU 1.0, labels agree.
        [score] = rewards.build("od_weighted_sum")([pred], solution=[gt])
        assert score == pytest.approx(0.7 * (1.0 / 2) + 0.3)
