"""``accuracy`` (VLM-R1's accuracy_reward, dispatching on ``accu_reward_method``) and ``math``.

``accuracy`` scores each sample with the method its ``accu_reward_method`` column names
(VLM-R1's per-sample and per-file methods), or ``method`` (default ``default``) when
the column is absent. The ``default`` method is VLM-R1's chain: math-verify, then
numeric equality when the GT has a digit, then the multiple-choice letter, then the
normalised InDel similarity of the cleaned texts.

>>> acc = AccuracyReward()
>>> acc(["<answer>2</answer>", "<answer>3</answer>", "<answer>the cat</answer>"],
...     solution=["<answer> 2 </answer>", "<answer> 2 </answer>", "<answer> a cat </answer>"])
[1.0, 0.0, 0.6666666666666667]
>>> acc(["<answer>B</answer>"], solution=["<answer> B </answer>"], accu_reward_method=["mcq"])
[1.0]
>>> MathReward()(["<answer>\\\\boxed{\\\\frac{1}{2}}</answer>", "<answer>0.4</answer>"],
...     solution=["<answer> 1/2 </answer>"] * 2)
[1.0, 0.0]
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from typing import Any

from vlmr1_trainer.rewards._text import block_or_all, clean_text, first_block_nodotall, indel_ratio, last_block
from vlmr1_trainer.rewards.choice import AllMatchReward, MCQReward, YesNoReward, extract_choice
from vlmr1_trainer.rewards.detection import OdAp50Reward, OdApReward, OdLengthReward
from vlmr1_trainer.rewards.mathnorm import NormaliserError, boxed_content, strip_string
from vlmr1_trainer.rewards.registry import BadGroundTruthError, Reward, register
from vlmr1_trainer.rewards.weighted_sum import OdWeightedSumReward

logger = logging.getLogger(__name__)
_DIGIT = re.compile(r"\d")


def math_verify_equal(student: str, gold: str) -> bool:
    """math-verify's ``verify(parse(student), parse(gold))``, student first as in VLM-R1.

    math-verify enforces its timeouts with SIGALRM, which only works on the main thread;
    elsewhere (TRL's async reward path) it would raise, so timeouts are off there.
    """
    from math_verify import parse, verify  # type: ignore[import-untyped]

    if threading.current_thread() is threading.main_thread():
        return bool(verify(parse(student), parse(gold)))
    return bool(verify(parse(student, parsing_timeout=None), parse(gold, parsing_timeout=None), timeout_seconds=None))


def _solution(sample: Mapping[str, Any]) -> str:
    solution = sample.get("solution")
    if not isinstance(solution, str):
        raise BadGroundTruthError("solution must be a string")
    return solution


def default_accuracy(completion: str, solution: str) -> float:
    """VLM-R1's ``default`` accuracy method."""
    gt = block_or_all(first_block_nodotall(solution), solution)
    ans = block_or_all(last_block(completion), completion)
    try:
        if math_verify_equal(ans, gt):
            return 1.0
    except Exception:  # VLM-R1 ignores every math-verify failure and moves on
        logger.debug("math-verify failed", exc_info=True)
    if _DIGIT.search(gt):
        try:
            return 1.0 if float(clean_text(ans)) == float(clean_text(gt)) else 0.0
        except (ValueError, OverflowError):
            return indel_ratio(clean_text(ans), clean_text(gt))
    letter = extract_choice(gt)
    if letter is not None:
        return 1.0 if extract_choice(ans) == letter else 0.0
    return indel_ratio(clean_text(ans), clean_text(gt))


def math_accuracy(completion: str, solution: str) -> float:
    """VLM-R1's ``math`` accuracy method."""
    a, b = clean_text(completion), clean_text(solution)
    if a == b:
        return 1.0
    try:
        if math_verify_equal(a, b):
            return 1.0
    except Exception:  # VLM-R1 lets these escape; a completion must not end training
        logger.debug("math-verify failed", exc_info=True)
    try:
        x = boxed_content(a)
    except ValueError:
        return 0.0
    try:
        return 1.0 if strip_string(x) == strip_string(b) else 0.0
    except (NormaliserError, IndexError):
        return 1.0 if x == b else 0.0


@register("math")
class MathReward(Reward):
    """VLM-R1's ``math`` method: exact cleaned text, math-verify, or normalised ``\\boxed{}`` content."""

    # math-verify (sympy) takes up to its own 5 s timeout on 10**10**10, and installs its own
    # alarm handler, so only a process it runs in can be stopped at the budget.
    cpu_bound = True

    def score(self, completion: str, sample: Mapping[str, Any]) -> float:
        return math_accuracy(completion, _solution(sample))


class _Default(Reward):
    def score(self, completion: str, sample: Mapping[str, Any]) -> float:
        return default_accuracy(completion, _solution(sample))


#: VLM-R1's ``accu_reward_method`` values (and our reward names for the same methods).
METHODS: dict[str, type[Reward]] = {
    "default": _Default,
    "mcq": MCQReward,
    "yes_no": YesNoReward,
    "all_match": AllMatchReward,
    "math": MathReward,
    "od_ap": OdApReward,
    "od_ap50": OdAp50Reward,
    "odLength": OdLengthReward,
    "od_length": OdLengthReward,
    "weighted_sum": OdWeightedSumReward,
    "od_weighted_sum": OdWeightedSumReward,
}


@register("accuracy")
class AccuracyReward(Reward):
    """VLM-R1's accuracy reward: per sample, the method in ``accu_reward_method`` (else ``method``).

    Parameters:
        method: the method for samples without an ``accu_reward_method`` column
            (``default``, ``mcq``, ``yes_no``, ``all_match``, ``math``, ``od_ap``,
            ``od_ap50``, ``odLength``/``od_length``, ``weighted_sum``/``od_weighted_sum``).
    """

    columns = ("solution", "accu_reward_method")
    value_range = (-1.0, 1.0)
    cpu_bound = True  # its methods include math (math-verify) and od_ap (COCO AP)

    def __init__(self, method: str = "default") -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"unknown accuracy method {method!r}; known methods: {', '.join(METHODS)}")
        self.method = method
        self._scorers = {name: cls() for name, cls in METHODS.items()}

    def score(self, completion: str, sample: Mapping[str, Any]) -> float | None:
        method = sample.get("accu_reward_method") or self.method
        scorer = self._scorers.get(method) if isinstance(method, str) else None
        if scorer is None:
            raise BadGroundTruthError(f"unknown accu_reward_method {method!r}; known methods: {', '.join(METHODS)}")
        return scorer.score(completion, sample)
