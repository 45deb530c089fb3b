"""Tables of exact values: format, rec_format, rec_iou, rec_acc."""

# Case tables keep one case per line, and Unicode look-alikes (fullwidth digits, dotless i) are the point.
# ruff: noqa: E501, RUF001

from __future__ import annotations

import pytest

from vlmr1_trainer import rewards

BIG = "x" * 20_000
GT = "<answer> [10, 20, 110, 220] </answer>"


class TestFormat:
    CASES = [
        ("<think>a</think><answer>b</answer>", 1.0),
        ("<think>a</think>\n \t<answer>b</answer>", 1.0),
        ("<think></think><answer></answer>", 1.0),
        ("<think><think>n</think></think><answer>a</answer><answer>b</answer>", 1.0),
        ("<think>a</think><answer>b</answer><think>c</think><answer>d</answer>", 1.0),
        ("<think>a</think>\u3000<answer>b</answer>", 1.0),
        (" <think>a</think><answer>b</answer>", 0.0),
        ("<think>a</think><answer>b</answer>\n", 0.0),
        ("<think>a</think>x<answer>b</answer>", 0.0),
        ("<THINK>a</THINK><ANSWER>b</ANSWER>", 0.0),
        ("<think>a</think><answer >b</answer>", 0.0),
        ("<think>a</think><answer>b", 0.0),
        ("<think>a<answer>b</answer>", 0.0),
        ("<think>a</think>\u200b<answer>b</answer>", 0.0),
        ("<think></answer>", 0.0),
        ("", 0.0),
        ("<think>" + BIG + "</think><answer>" + BIG + "</answer>", 1.0),
        ("<think>" + "</think><answer>" * 2000, 0.0),
    ]

    @pytest.mark.parametrize(("completion", "expected"), CASES)
    def test_values(self, completion: str, expected: float) -> None:
        assert rewards.build("format")([completion]) == [expected]


class TestRecFormat:
    CASES = [
        ('<think>x</think><answer>{"bbox_2d": [1,2,3,4]}</answer>', 1.0),
        ('<think>x</think> <answer>{"bbox_2d": [1, 2,\n3,  4]}</answer>', 1.0),
        ("<think>x</think><answer>{[１,２,３,４]}</answer>", 1.0),
        ("junk<think>x</think><answer>{ [1,2,3,4] }</answer>junk", 1.0),
        ("<think>x</think><answer>{[1,2,3,4]</answer> } </answer>", 1.0),
        ("<think>x</think><answer>[1,2,3,4]</answer>", 0.0),
        ("<think>x</think><answer>{[1,2,3,4,5]}</answer>", 0.0),
        ("<think>x</think><answer>{[ 1,2,3,4]}</answer>", 0.0),
        ("<think>x</think><answer>{[1.5,2,3,4]}</answer>", 0.0),
        ("<think>x</think><answer>{[-1,2,3,4]}</answer>", 0.0),
        ("<think>x</think><answer>{[1,2,3,4]}", 0.0),
        ("<answer>{[1,2,3,4]}</answer>", 0.0),
        ("<think>x</think>so<answer>{[1,2,3,4]}</answer>", 0.0),
        ("<think>" + "{[1,2,3" * 3000 + "</think><answer>", 0.0),
    ]

    @pytest.mark.parametrize(("completion", "expected"), CASES)
    def test_values(self, completion: str, expected: float) -> None:
        assert rewards.build("rec_format")([completion]) == [expected]


class TestRecIou:
    CASES = [
        # (completion, solution, extra columns, expected)
        ("<answer>[10,20,110,220]</answer>", GT, {}, 1.0),
        ('<answer>{"bbox_2d": [10,20,110,220], "label": "dog"}</answer>', GT, {}, 1.0),
        ("<answer>[10,20,60,220]</answer>", GT, {}, 0.5),
        ("<answer>[10, 20, 110, 220]</answer>", GT, {}, 1.0),
        ("<answer>[１０,２０,１１０,２２０]</answer>", GT, {}, 1.0),
        ("<answer>[10.0,20,110,220]</answer>", GT, {}, 0.0),
        ("<answer>[-10,20,110,220]</answer>", GT, {}, 0.0),
        ("<answer>[ 10,20,110,220]</answer>", GT, {}, 0.0),
        ("<answer>[10 ,20,110,220]</answer>", GT, {}, 0.0),
        ("<answer>[\n  10,\n  20,\n  110,\n  220\n]</answer>", GT, {}, 0.0),
        ("<answer>[110,220,10,20]</answer>", GT, {}, 0.0),
        ("<answer>[10,20,10,20]</answer>", GT, {}, 0.0),
        ("<answer>[0,0,0,0]</answer>", "<answer> [0, 0, 0, 0] </answer>", {}, 0.0),
        ("<answer>[0,0,1,1]</answer>", "<answer> [0, 0, 1, 1] </answer>", {}, 0.0),
        ("[10,20,110,220]", GT, {}, 0.0),
        ("<answer>[10,20,110,220]", GT, {}, 0.0),
        ("<answer>none</answer><answer>[10,20,110,220]</answer>", GT, {}, 0.0),
        ("<answer>[10,20,110,220] or [0,0,5,5]</answer>", GT, {}, 1.0),
        ("<answer>[" + "9" * 5000 + ",0,1,1]</answer>", GT, {}, 0.0),
        ("<answer>[10,20,110,220]</answer>", '<answer> {"x": 1} </answer>', {}, 0.0),
        # A ground truth written as the JSON answer (an SFT target too): its bbox_2d is the box.
        ("<answer>[10,20,110,220]</answer>", '<answer> {"bbox_2d": [10, 20, 110, 220]} </answer>', {}, 1.0),
        ("<answer>[10,20,60,220]</answer>", '<answer> [{"bbox_2d": [10, 20, 110, 220]}] </answer>', {}, 0.5),
        ("<answer>[10,20,110,220]</answer>", '<answer> {"bbox_2d": "none"} </answer>', {}, 0.0),
        ("<answer>[10,20,110,220]</answer>", "<answer> [10, 20, 110] </answer>", {}, 0.0),
        ("<answer>[10,20,110,220]</answer>", "<answer> [10.5, 20, 110, 220] </answer>", {}, 0.995),
        ("<answer>[0,0,28,28]</answer>", "<answer> [0, 0, 100, 50] </answer>", {"image_size": [100, 50], "input_size": [28, 28]}, 1.0),
        ("<answer>[0,0,14,28]</answer>", "<answer> [0, 0, 50, 50] </answer>", {"image_size": [[100, 50]], "input_size": [28, 28]}, 1.0),
        ("<answer>[0,0,28,28]</answer>", "<answer> [0, 0, 28, 28] </answer>", {"image_size": [100, 50]}, 1.0),
        ("<answer>[0,0,28,28]</answer>", "<answer> [0, 0, 100, 50] </answer>", {"image_size": None, "input_size": [28, 28]}, 0.1568),
        # 10**18-scale coordinates need exact integer arithmetic.
        (f"<answer>[{10**18},0,{10**18 + 4},4]</answer>", f"<answer> [{10**18 + 2}, 0, {10**18 + 6}, 4] </answer>", {}, 1 / 3),
        ("<answer>[10,20,110,220]</answer>", "<answer> [10, 20, 110, 220]", {}, None),
        ("<answer>[10,20,110,220]</answer>", "<answer> [10, 20, 110, </answer>", {}, None),
        ("<answer>[10,20,110,220]</answer>", GT, {"image_size": [0, 50], "input_size": [28, 28]}, None),
    ]  # fmt: skip

    @pytest.mark.parametrize(("completion", "solution", "extra", "expected"), CASES)
    def test_values(self, completion: str, solution: str, extra: dict[str, object], expected: float | None) -> None:
        columns = {k: [v] for k, v in extra.items()}
        [score] = rewards.build("rec_iou")([completion], solution=[solution], **columns)
        if expected is None:
            assert score is None
        else:
            assert score == pytest.approx(expected, abs=1e-12)

    def test_rescale_is_divide_first_float64(self) -> None:
        # 3 / 28 * 28 == 3.0000000000000004: the strict tests of iou_pix see it.
        sample = {"solution": "<answer> [0, 0, 3, 3] </answer>", "image_size": [28, 28], "input_size": [28, 28]}
        assert rewards.build("rec_iou").score("<answer>[0,0,3,3]</answer>", sample) == pytest.approx(1.0)

    def test_lenient_boxes_accepts_floats_and_spaces(self) -> None:
        reward = rewards.build("rec_iou", lenient_boxes=True)
        assert reward(["<answer>[ 10.0, 20 , 110, 220 ]</answer>"], solution=[GT]) == [1.0]
        assert reward(["<answer>[-5, 20, 110, 220]</answer>"], solution=[GT]) == [1.0 * 100 * 200 / (115 * 200)]


class TestRecAcc:
    CASES = [
        ("<answer>[10,20,110,220]</answer>", 1.0),
        ("<answer>[10,20,60,220]</answer>", 1.0),
        ("<answer>[10,20,59,220]</answer>", 0.0),
        ("<answer>no box</answer>", 0.0),
    ]

    @pytest.mark.parametrize(("completion", "expected"), CASES)
    def test_values(self, completion: str, expected: float) -> None:
        assert rewards.build("rec_acc")([completion], solution=[GT]) == [expected]

    def test_threshold_parameter(self) -> None:
        assert rewards.build("rec_acc", threshold=0.9)(["<answer>[10,20,60,220]</answer>"], solution=[GT]) == [0.0]
