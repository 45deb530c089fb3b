"""Tables of exact values: accuracy, math, mcq, yes_no, all_match, repetition, length_cosine."""

# Unicode look-alikes (fullwidth digits, dotless i) are the point of some cases.
# ruff: noqa: RUF001

from __future__ import annotations

import json
import math

import pytest

from vlmr1_trainer import rewards
from vlmr1_trainer.rewards.choice import extract_choice
from vlmr1_trainer.rewards.mathnorm import NormaliserError, strip_string
from vlmr1_trainer.rewards.repetition import distinct_keys


def a(text: str) -> str:
    return f"<answer> {text} </answer>"


def check(name: str, completion: str, solution: str, expected: float | None, **extra: object) -> None:
    columns = {k: [v] for k, v in extra.items()}
    [score] = rewards.build(name)([completion], solution=[solution], **columns)
    if expected is None:
        assert score is None
    else:
        assert score == pytest.approx(expected, abs=1e-12)


class TestAccuracy:
    CASES = [
        ("<answer>2</answer>", a("2"), 1.0),
        ("<answer>2.0</answer>", a("2"), 1.0),
        ("<answer>3</answer>", a("2"), 0.0),
        ("<answer>two</answer>", a("2"), 0.0),
        ("<answer>1/2</answer>", a("0.5"), 1.0),
        ("<answer>３</answer>", a("3"), 1.0),
        ("<answer>inf</answer>", a("inf1"), 1 - 1 / 7),
        ("<answer>" + "9" * 5000 + "</answer>", a("3"), 0.0),
        ("<answer>I choose C.</answer>", a("B"), 0.0),
        ("<answer>I choose B.</answer>", a("B"), 1.0),
        ("<answer>Paris.</answer>", a("paris"), 1.0),
        ("<answer>the cat</answer>", a("a cat"), 2 / 3),
        ("<answer>london</answer>", a("paris"), 0.0),
        ("x = 3", a("3"), 1.0),
        ("<answer>1</answer><answer>2</answer>", a("2"), 1.0),
        ("<answer>2</answer><answer>1</answer>", a("2"), 0.0),
        # A GT with a newline inside falls back to the whole tagged solution.
        ("<answer>abc</answer>", "<answer> abd\nx </answer>", 0.5),
        ("", a("paris"), 0.0),
    ]

    @pytest.mark.parametrize(("completion", "solution", "expected"), CASES)
    def test_values(self, completion: str, solution: str, expected: float) -> None:
        check("accuracy", completion, solution, expected)

    def test_dispatches_on_accu_reward_method(self) -> None:
        reward = rewards.build("accuracy")
        completions = ["<answer>B</answer>", "<answer>Yes</answer>", "<answer>[0,0,1,1]</answer>", "<answer>B</answer>"]
        solutions = [a("B"), a("no"), a("```json\n[]\n```"), a("B")]
        methods = ["mcq", "yes_no", "odLength", None]
        assert reward(completions, solution=solutions, accu_reward_method=methods) == [1.0, 0.0, 1.0, 1.0]

    def test_unknown_method_is_a_data_error(self) -> None:
        assert rewards.build("accuracy")(["x"], solution=[a("x")], accu_reward_method=["llm"]) == [None]

    def test_method_parameter(self) -> None:
        assert rewards.build("accuracy", method="yes_no")(["no"], solution=[a("nope")]) == [1.0]
        with pytest.raises(ValueError, match="unknown accuracy method 'nope'"):
            rewards.build("accuracy", method="nope")


class TestMath:
    CASES = [
        ("<answer>\\boxed{\\frac{1}{2}}</answer>", a("1/2"), 1.0),
        ("<answer>\\boxed{\\frac{1}{2}}</answer>", a("\\frac12"), 1.0),
        ("<answer>X+1</answer>", a("x+1"), 1.0),
        ("<answer>\\fbox{2}</answer>", a("3"), 0.0),
        ("<answer>\\boxed 5$ and</answer>", a("5"), 1.0),
        ("<answer>\\boxed{\\sqrt}</answer>", a("\\sqrt"), 1.0),
        ("<answer>\\boxed{3}</answer>", a("4"), 0.0),
        ("<answer>\\boxed{10^\\circ}</answer>", a("10"), 1.0),
        ("<answer>\\boxed{\\text{ cm} 3}</answer>", a("3"), 0.0),
        ("<answer>\\boxed{a</answer>", a("b"), 0.0),
        ("<answer>0.4</answer>", a("1/2"), 0.0),
        ("\\boxed{" * 3000, a("1"), 0.0),
    ]

    @pytest.mark.parametrize(("completion", "solution", "expected"), CASES)
    def test_values(self, completion: str, solution: str, expected: float) -> None:
        check("math", completion, solution, expected)

    @pytest.mark.parametrize(
        ("text", "normal"),
        [
            ("\\dfrac12", "\\frac{1}{2}"),
            ("\\frac1{72}", "\\frac{1}{72}"),
            ("\\frac{3}{4}", "\\frac{3}{4}"),
            ("\\frac1", "\\frac1"),
            ("x = .5", "\\frac{1}{2}"),
            ("\\sqrt2", "\\sqrt{2}"),
            ("10\\%", "10"),
            ("\\left(1, 2\\right)", "(1,2)"),
            ("5\\text{ cm}", "5"),
            ("", ""),
        ],
    )
    def test_normaliser(self, text: str, normal: str) -> None:
        assert strip_string(text) == normal

    @pytest.mark.parametrize("text", ["\\sqrt", "\\frac", "\\frac\\frac12", "a/b", "1\\text{ a}\\text{ b}"])
    def test_normaliser_raises_where_hendrycks_does(self, text: str) -> None:
        with pytest.raises((NormaliserError, IndexError)):
            strip_string(text)


class TestMCQ:
    CASES = [
        ("<answer>B</answer>", a("B"), 1.0),
        ("<answer>b.</answer>", a("B"), 1.0),
        ("<answer>The answer is B.</answer>", a("B"), 1.0),
        ("<answer>B</answer><answer>C</answer>", a("C"), 0.0),
        ("<answer>AB</answer>", a("B"), 0.0),
        ("<answer>A, B or C? I think the answer is C.</answer>", a("C"), 0.0),
        ("B", a("B"), 1.0),
        ("<answer>ı.</answer>", a("I"), 1.0),
        ("<answer>ß.</answer>", a("S"), 0.0),
        ("<answer>B</answer>", a("B. cat"), 1.0),
        ("<answer>B</answer>", a("blue"), 0.0),
        # A newline in the GT block: VLM-R1 falls back to the whole tagged solution, no letter.
        ("<answer>B</answer>", "<answer> B\n </answer>", 0.0),
        ("", a("B"), 0.0),
        ("B. " * 5000, a("B"), 1.0),
    ]

    @pytest.mark.parametrize(("completion", "solution", "expected"), CASES)
    def test_values(self, completion: str, solution: str, expected: float) -> None:
        check("mcq", completion, solution, expected)

    @pytest.mark.parametrize(
        ("text", "letter"),
        [("B", "B"), ("(C)", None), ("C)", None), ("Options: A, B. Answer: B.", "B"), ("é.", None), ("x: y;", "X")],
    )
    def test_extract_choice(self, text: str, letter: str | None) -> None:
        assert extract_choice(text) == letter


class TestYesNo:
    CASES = [
        ("<answer>Yes</answer>", a("yes"), 1.0),
        ("<answer>YES!</answer>", a("Yes."), 1.0),
        ("<answer>No</answer>", a("yes"), 0.0),
        ("<answer>I don't know</answer>", a("no"), 1.0),
        ("<answer>eyes</answer>", a("yes"), 1.0),
        ("<answer>maybe</answer>", a("perhaps"), 1.0),
        ("<answer>maybe</answer>", a("yes"), 0.0),
        ("<answer>yes</answer><answer>no</answer>", a("no"), 0.0),
        ("yes", a("yes"), 1.0),
        ("", a("no"), 0.0),
    ]

    @pytest.mark.parametrize(("completion", "solution", "expected"), CASES)
    def test_values(self, completion: str, solution: str, expected: float) -> None:
        check("yes_no", completion, solution, expected)


class TestAllMatch:
    CASES = [
        ("<answer>Click OK.</answer>", a("click ok"), 1.0),
        ("click ok", a("click ok"), 1.0),
        ("<answer>click  ok</answer>", a("click ok"), 0.0),
        ("<answer>click\nok</answer>", a("click ok"), 1.0),
        ("<answer>click ok .</answer>", a("click ok"), 0.0),
        ("<answer>no defect</answer><answer>missing button</answer>", a("missing button"), 1.0),
        ("", a("x"), 0.0),
    ]

    @pytest.mark.parametrize(("completion", "solution", "expected"), CASES)
    def test_values(self, completion: str, solution: str, expected: float) -> None:
        check("all_match", completion, solution, expected)


def boxes(*pairs: tuple[object, object]) -> str:
    return "```json\n" + json.dumps([{"bbox_2d": b, "label": lab} for b, lab in pairs]) + "\n```"


class TestRepetition:
    CASES = [
        ("", 0.0),
        ("one two three four five", 0.0),
        ("a b c d e f", 0.0),
        ("a b c d e f a b c d e f", -(1 - 6 / 7)),
        ("A b c d e f a B c d e f", -(1 - 6 / 7)),
        (boxes(([1, 2, 3, 4], "a"), ([1, 2, 3, 4], "a")), -0.5),
        (boxes(([1, 2, 3, 4], "a"), ([1, 2, 3, 4], "a"), ([1, 2, 3, 4], "a"), ([5, 6, 7, 8], "a")), -0.5),
        (boxes(([1, 2, 3, 4], "a"), ([1.0, 2.0, 3.0, 4.0], "a")), 0.0),
        (boxes(([1, 2, 3, 4], None), ([1, 2, 3, 4], "None")), -0.5),
        (boxes(([1, 2, 3, 4], "a"), ([1, 2, 3, 4], "b")), 0.0),
        ("```json\n[1, 2, 3]\n```", 0.0),
        ("```json\n[null]\n```", 0.0),
        ('```json\n[{"a": 1}]\n``` a b c d e f a b c d e f', 0.0),
        ("```json\n``` a b c d e f a b c d e f", -(1 - 8 / 9)),
        ('```json\n[{"bbox_2d": [1, 2, 3, 4], "label": "a"}, {"bbox_2d": [1, 2, 3, 4], "label": "a"}\n```', -0.5),
        ('see [{"bbox_2d": [1, 2, 3, 4], "label": "a"}, {"bbox_2d": [1, 2, 3, 4], "label": "a"}] ok', -0.5),
        ("```json\n{}\n``` x x x x x x x", -(1 - 4 / 5)),
        ("na " * 10, -(1 - 1 / 5)),
    ]

    @pytest.mark.parametrize(("completion", "expected"), CASES)
    def test_values(self, completion: str, expected: float) -> None:
        [score] = rewards.build("repetition")([completion])
        assert score == pytest.approx(expected, abs=1e-12)

    def test_no_repetition_is_minus_zero_as_in_vlm_r1(self) -> None:
        assert str(rewards.build("repetition")(["a b c d e f g"])[0]) == "-0.0"

    # (bbox, label) pairs: the tuple count (four ints, str labels) or VLM-R1's text keys.
    KEY_CASES = [
        [([1, 2, 3, 4], "a"), ([1, 2, 3, 4], "a")],
        [([1, 2, 3, 4], "a"), ([1, 2, 3, 4], "b"), ([4, 3, 2, 1], "a")],
        [([-1, 0, 10**30, 4], "a"), ([-1, 0, 10**30, 4], "a")],
        [([1, 2, 3, 4], "a"), ([1.0, 2.0, 3.0, 4.0], "a")],
        [([1, 2, 3, 4], "a"), ([True, 2, 3, 4], "a"), ([1, 2, 3, 4], "a")],
        [([1, 2, 3, 4], "a"), ("[1, 2, 3, 4]", "a")],
        [([1, 2, 3, 4], None), ([1, 2, 3, 4], "None")],
        [([1, 2, 3, 4], "a"), ([1, 2, 3, 4], 7), ([1, 2, 3, 4], "7")],
        [([1, 2, 3], "a"), ([1, 2, 3], "a"), ([1, 2, 3, 4], "a")],
        [([1, 2, 3, 4, 5], "a"), ([1, 2, 3, 4], "5]_a")],
        [([1, 2, 3, 4], "a_b"), ([1, 2, 3, 4], "a_b"), ([1, 2, 3, 4], "a b")],
        [([0.0, 0, 1, 1], "a"), ([-0.0, 0, 1, 1], "a")],
        [([[1, 2], 3, 4, 5], "a"), (["[1, 2]", 3, 4, 5], "a")],
    ]  # fmt: skip

    @pytest.mark.parametrize("pairs", KEY_CASES)
    def test_distinct_keys_counts_vlm_r1_text_keys(self, pairs: list[tuple[object, object]]) -> None:
        assert distinct_keys(pairs) == len({f"{bbox}_{label}" for bbox, label in pairs})

    # Whole completions on the 6-gram path (lowercased words, one split).
    TEXT_CASES = [
        "a b c d e",
        "a b c d e f",
        "A B C D E F a b c d e f",
        "x\ty\nz\u3000x y\xa0z x y z",
        "İ İ İ İ İ İ İ İ",
        "ß SS ß SS ß SS ß SS",
        "one two three four five six seven eight nine ten",
    ]

    @pytest.mark.parametrize("text", TEXT_CASES)
    def test_text_path_as_vlm_r1_counts_it(self, text: str) -> None:
        if len(text.split()) < 6:
            expected = 0.0
        else:
            words = text.lower().split()
            grams = list(zip(*[words[i:] for i in range(6)], strict=False))
            expected = -(1 - len(set(grams)) / len(grams))
        [score] = rewards.build("repetition")([text])
        assert score == expected
        assert math.copysign(1, score) == math.copysign(1, expected)  # -0.0 as in VLM-R1


class TestLengthCosine:
    CASES = [
        ("<answer>2</answer>", 0, 1.0),
        ("<answer>2</answer>", 512, 0.75),
        ("<answer>2</answer>", 1024, 0.5),
        ("<answer>2</answer>", 5000, 0.5),
        ("<answer>3</answer>", 0, -0.5),
        ("<answer>3</answer>", 512, -0.25),
        ("<answer>3</answer>", 1024, 0.0),
        ("<answer>3</answer>", 4096, 0.0),
    ]

    @pytest.mark.parametrize(("completion", "length", "expected"), CASES)
    def test_values(self, completion: str, length: int, expected: float) -> None:
        check("length_cosine", completion, a("2"), expected, completion_length=length)

    def test_reads_trl_completion_ids(self) -> None:
        reward = rewards.build("length_cosine", max_length=4)
        scores = reward(["<answer>2</answer>"] * 2, solution=[a("2")] * 2, completion_ids=[[1, 2], [1] * 9])
        assert scores == [pytest.approx(0.5 + 0.5 * (1 + math.cos(math.pi / 2)) / 2), 0.5]

    def test_accuracy_reward_is_a_parameter(self) -> None:
        reward = rewards.build("length_cosine", accuracy="rec_iou", max_length=10)
        assert reward(["<answer>[0,0,10,10]</answer>"], solution=[a("[0, 0, 10, 10]")], completion_length=[0]) == [1.0]

    def test_without_a_length_the_score_is_none(self) -> None:
        assert rewards.build("length_cosine")(["<answer>2</answer>"], solution=[a("2")]) == [None]
