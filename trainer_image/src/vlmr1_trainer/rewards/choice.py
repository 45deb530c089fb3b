"""Exact-answer rewards: ``mcq``, ``yes_no`` and ``all_match`` (GUI), with VLM-R1's ``extract_choice``.

>>> MCQReward()(["<answer>B.</answer>", "I think the answer is C", "<answer>B</answer>"],
...     solution=["<answer> B </answer>"] * 3)
[1.0, 0.0, 1.0]
>>> YesNoReward()(["<answer>Yes</answer>", "I don't know", "maybe"], solution=["<answer> yes </answer>"] * 3)
[1.0, 0.0, 0.0]
>>> AllMatchReward()(["<answer>Click OK.</answer>", "click ok"], solution=["<answer> click ok </answer>"] * 2)
[1.0, 1.0]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from vlmr1_trainer.rewards._text import block_or_all, clean_text, first_block, first_block_nodotall
from vlmr1_trainer.rewards.registry import BadGroundTruthError, Reward, register

_WS_RUN = re.compile(r"\s+")
# ``$`` would also match before a final newline; after whitespace folding there is
# none, and ``\Z`` says "end of string" without that caveat.
_CANDIDATE = re.compile(r"(?<![A-Z])([A-Z])(?=[.,?!:;]|\Z)")
_KEYWORDS = tuple(
    k.upper()
    for k in (
        "答案", "选择", "正确", "是", "对", "answer", "correct", "choose", "select", "right",
        "认为", "应该", "觉得", "think", "believe", "should",
    )
)  # fmt: skip
_AFTER_MARKS = frozenset("\u3002.!\uff01,\uff0c")  # ideographic full stop, fullwidth ! and ,
_YES_NO = re.compile(r"(yes|no)")


def extract_choice(text: str) -> str | None:
    """VLM-R1's multiple-choice letter extraction.

    >>> extract_choice("B")
    'B'
    >>> extract_choice("A, B or C? I think the answer is C.")  # scores use each letter's first occurrence
    'A'
    >>> extract_choice("Options: A, B. Answer: B.")
    'B'
    >>> extract_choice("ß.") is None
    True
    """
    text = _WS_RUN.sub(" ", text.upper())
    candidates = _CANDIDATE.findall(text)
    if not candidates:
        return None
    if len(candidates) == 1:
        return str(candidates[0])
    n = len(text)
    # VLM-R1 adds, per candidate occurrence, points computed at the letter's *first*
    # occurrence anywhere in the text; equal for every occurrence of a letter, so it is
    # count * points (dict order keeps first-candidate order for ties).
    counts: dict[str, int] = {}
    for letter in candidates:
        counts[letter] = counts.get(letter, 0) + 1
    scores: dict[str, int] = {}
    for letter, count in counts.items():
        pos = text.find(letter)
        window = text[max(0, pos - 20) : min(n, pos + 20)]
        points = sum(1 for k in _KEYWORDS if k in window)
        if pos > 0.7 * n:
            points += 2
        if pos < n - 1 and text[pos + 1] in _AFTER_MARKS:
            points += 1
        scores[letter] = count * points
    return max(scores.items(), key=lambda item: item[1])[0]


def _solution(sample: Mapping[str, Any]) -> str:
    solution = sample.get("solution")
    if not isinstance(solution, str):
        raise BadGroundTruthError("solution must be a string")
    return solution


@register("mcq")
class MCQReward(Reward):
    """1.0 when the letter chosen in the first answer block equals the solution's letter."""

    def score(self, completion: str, sample: Mapping[str, Any]) -> float:
        solution = _solution(sample)
        gt = block_or_all(first_block_nodotall(solution), solution)
        # Without a letter in the GT, VLM-R1 compares with the whole solution: never equal.
        correct = extract_choice(gt) or solution.strip()
        chosen = extract_choice(block_or_all(first_block(completion), completion))
        return 1.0 if chosen is not None and chosen == correct else 0.0


def _yes_or_no(text: str) -> str:
    found = _YES_NO.search(text)
    return found.group(1) if found else ""


@register("yes_no")
class YesNoReward(Reward):
    """1.0 when the first ``yes``/``no`` substring of both answers agrees (both absent counts as agreeing)."""

    def score(self, completion: str, sample: Mapping[str, Any]) -> float:
        solution = _solution(sample).lower()
        completion = completion.lower()
        gt = _yes_or_no(block_or_all(first_block_nodotall(solution), solution))
        ans = _yes_or_no(block_or_all(first_block(completion), completion))
        return 1.0 if gt == ans else 0.0


@register("all_match")
class AllMatchReward(Reward):
    """1.0 when ``clean_text`` of completion and solution are equal (GUI defect detection)."""

    def score(self, completion: str, sample: Mapping[str, Any]) -> float:
        return 1.0 if clean_text(completion) == clean_text(_solution(sample)) else 0.0
