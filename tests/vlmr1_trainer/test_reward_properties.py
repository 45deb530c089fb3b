"""Properties of every reward: a finite score in its range (or None), never an exception, no blow-up.

``score`` is called directly (not through the batch wrapper that would turn a bug into a
logged 0.0), so a crash on any completion fails here.
"""

# Case tables keep one case per line, and Unicode look-alikes (fullwidth digits, dotless i) are the point.
# ruff: noqa: E501, RUF001

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlmr1_trainer import rewards
from vlmr1_trainer.rewards.registry import BadGroundTruthError

DET = '<answer> ```json\n[{"bbox_2d": [10, 10, 50, 50], "label": "cat"}, {"bbox_2d": [0, 0, 5, 5], "label": "dog"}]\n``` </answer>'
SAMPLES: dict[str, dict[str, Any]] = {
    "rec_iou": {"solution": "<answer> [10, 10, 50, 50] </answer>", "image_size": [640, 480], "input_size": [644, 476]},
    "rec_acc": {"solution": "<answer> [10, 10, 50, 50] </answer>"},
    "od_ap": {"solution": DET},
    "od_ap50": {"solution": DET},
    "od_length": {"solution": DET},
    "od_weighted_sum": {"solution": DET},
    "mcq": {"solution": "<answer> B </answer>"},
    "yes_no": {"solution": "<answer> yes </answer>"},
    "all_match": {"solution": "<answer> click the ok button </answer>"},
    "math": {"solution": "<answer> \\frac{1}{2} </answer>"},
    "accuracy": {"solution": "<answer> 42 </answer>", "accu_reward_method": "default"},
    "length_cosine": {"solution": "<answer> 42 </answer>", "completion_length": 300},
}
DEFAULT_SAMPLE: dict[str, Any] = {"solution": "<answer> 2 </answer>"}
# math-verify (sympy) and the timeout signal make these slow per example; fewer examples.
SLOW = {"accuracy", "math", "length_cosine"}

FRAGMENTS = [
    "<answer>", "</answer>", "<think>", "</think>", "\n", " ", "\t", "a", "B.", "yes", "no", "1", "-7", "3.5",
    "1e309", "NaN", ",", "{", "}", "[", "]", "```", "```json", '"bbox_2d"', '"label"', '"cat"', ":", "[10,10,50,50]",
    '{"bbox_2d": [10, 10, 50, 50], "label": "cat"}', '{"bbox_2d": [50, 50, 10, 10], "label": "cat"}',
    "\\boxed{", "\\frac", "\\sqrt", "/", "=", "ß", "İ", "３", "\u3000", "\u200b", "😀", "null", "99999999999999999999",
]  # fmt: skip
completions = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join),
)


def _check(name: str, completion: str) -> None:
    reward = rewards.build(name)
    value = reward.score(completion, SAMPLES.get(name, DEFAULT_SAMPLE))
    assert value is not None, "a valid ground truth always gives a score"
    assert math.isfinite(value)
    low, high = reward.value_range
    assert low <= value <= high, (name, completion, value)


FAST = sorted(set(rewards.available()) - SLOW)


@pytest.mark.parametrize("name", FAST)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(completion=completions)
def test_any_completion_scores_in_range(name: str, completion: str) -> None:
    _check(name, completion)


@pytest.mark.parametrize("name", sorted(SLOW))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(completion=completions)
def test_any_completion_scores_in_range_math_verify(name: str, completion: str) -> None:
    _check(name, completion)


@pytest.mark.parametrize("name", FAST)
@settings(max_examples=100, deadline=None)
@given(solution=st.text(max_size=200) | st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join))
def test_any_solution_scores_or_is_a_data_error(name: str, solution: str) -> None:
    reward = rewards.build(name)
    try:
        value = reward.score("<answer>[10,10,50,50]</answer>", {"solution": solution})
    except BadGroundTruthError:
        return
    assert value is None or isinstance(value, float)
    # Absurd numbers in the GT may give a non-finite float; the wrapper never lets one out.
    checked, _ = reward.score_checked("<answer>[10,10,50,50]</answer>", {"solution": solution})
    assert checked is None or math.isfinite(checked)


def _soup(size: int) -> str:
    text = "".join(FRAGMENTS)
    return (text * (size // len(text) + 1))[:size]


def _repeat(unit: str, size: int, head: str = "", tail: str = "") -> str:
    return head + unit * ((size - len(head) - len(tail)) // len(unit)) + tail


# Adversarial completions of about ``size`` characters: each one defeats a naive lazy regex
# somewhere (a scan from every opening tag to the end is quadratic in the length).
ADVERSARIAL: dict[str, Callable[[int], str]] = {
    "soup": _soup,
    "opens": lambda size: _repeat("<answer>", size),
    "think": lambda size: _repeat("</think><answer>", size, head="<think>"),
    "box": lambda size: _repeat("[1,", size, head="<answer>"),
    "fence": lambda size: _repeat("```json", size),
    "bbox_list": lambda size: _repeat('[{"bbox_2d""label"', size),
    "digits": lambda size: _repeat("1", size, head="<answer>[", tail="</answer>"),
    "boxed": lambda size: _repeat("\\boxed{", size),
    "letters": lambda size: _repeat("A. ", size),
    "unicode": lambda size: _repeat("😀ß\u3000", size),
    "words": lambda size: _repeat("the cat sat on the mat ", size),
}
BIG = {kind: make(20_000) for kind, make in ADVERSARIAL.items()}


def _best_of(reward: rewards.Reward, completion: str, sample: dict[str, Any], repeats: int = 5) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        reward.score_checked(completion, sample)
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize("kind", sorted(ADVERSARIAL))
def test_adversarial_completions_cost_linear_time(name: str, kind: str) -> None:
    # Ten times the text may cost about ten times the time; a quadratic scan costs a hundred.
    # A ratio measured side by side holds on any machine (how fast a reward is on typical
    # completions is bench/rewards.py's); the 1 ms absorbs timer noise on microsecond calls.
    reward = rewards.build(name)
    sample = SAMPLES.get(name, DEFAULT_SAMPLE)
    small = _best_of(reward, ADVERSARIAL[kind](2_000), sample)
    big = _best_of(reward, BIG[kind], sample)
    assert big < 30 * small + 0.001, f"{name} on {kind}: 2 KB in {small * 1e3:.3f} ms, 20 KB in {big * 1e3:.3f} ms"


def test_repetition_on_20kb_broken_json_is_linear() -> None:
    # Broken JSON goes through json_repair (pure Python, linear, ~1 us per character):
    # its cost is the library's, like math-verify's for accuracy; bound it loosely.
    reward = rewards.build("repetition")
    broken = "```json\n[" + '{"bbox_2d": [1,2,3,4], "label": "a"},' * 540 + "\n```"
    small = "```json\n[" + '{"bbox_2d": [1,2,3,4], "label": "a"},' * 54 + "\n```"
    assert reward.score(broken, {}) == pytest.approx(-(1 - 1 / 540))
    assert _best_of(reward, broken, {}, 3) < 15 * _best_of(reward, small, {}, 3) + 0.005


@pytest.mark.parametrize("name", sorted(SLOW))
def test_math_verify_rewards_on_20kb_stay_bounded(name: str) -> None:
    reward = rewards.build(name)
    sample = SAMPLES[name]
    for text in (BIG["opens"], BIG["boxed"], BIG["digits"]):
        assert _best_of(reward, text, sample, 2) < 0.5
