"""Shared text helpers: equal to VLM-R1's regexes, exact on edge cases."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmr1_trainer.rewards._text import (
    clean_text,
    first_block,
    first_block_nodotall,
    indel_ratio,
    iou_pix,
    json_blocks,
    last_block,
)
from vlmr1_trainer.rewards.format import FormatReward, RecFormatReward
from vlmr1_trainer.rewards.repetition import _bbox_list_text

# Fragments that make tag soups likely: every piece a pattern cares about, and noise.
FRAGMENTS = [
    "<answer>", "</answer>", "<think>", "</think>", "\n", " ", "\r", "a", "1", ",", "{", "}", "[", "]",
    "```", "```json", '"bbox_2d"', '"label"', "[1,2,3,4]", "[1, 2,3,4]", "\u3000", "x",
]  # fmt: skip
soups = st.lists(st.sampled_from(FRAGMENTS), max_size=14).map("".join)

ANSWER_D = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
ANSWER_ND = re.compile(r"<answer>(.*?)</answer>")
FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
REC_FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?\{.*\[\d+,\s*\d+,\s*\d+,\s*\d+\].*\}.*?</answer>", re.DOTALL)
JSON_FENCE = re.compile(r"```json(.*?)```", re.DOTALL)
BBOX_LIST = re.compile(r'\[\s*{.*?"bbox_2d".*?"label".*?}\s*\]', re.DOTALL)


@settings(max_examples=600)
@given(soups)
def test_extractors_equal_the_regexes(text: str) -> None:
    found = ANSWER_D.search(text)
    assert first_block(text) == (found.group(1) if found else None)
    every = ANSWER_D.findall(text)
    assert last_block(text) == (every[-1] if every else None)
    found = ANSWER_ND.search(text)
    assert first_block_nodotall(text) == (found.group(1) if found else None)
    assert json_blocks(text) == JSON_FENCE.findall(text)
    found = BBOX_LIST.search(text)
    assert _bbox_list_text(text) == (found.group(0) if found else None)


@settings(max_examples=600)
@given(soups)
def test_format_rewards_equal_the_regexes(text: str) -> None:
    assert FormatReward().score(text, {}) == (1.0 if FORMAT.fullmatch(text) else 0.0)
    assert RecFormatReward().score(text, {}) == (1.0 if REC_FORMAT.search(text) else 0.0)


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("a\n\nb", "a b"),
        ("a \nb", "a b"),
        ("a\r\nb", "a b"),
        ("abc .", "abc "),
        ("  The Answer...  ", "the answer"),
        ("<answer>X</answer> tail <answer> Y. </answer>", "y"),
        ("\na", "a"),
        ("ß İ", "ß i̇"),
        ("<answer><answer>x</answer></answer>", "<answer>x"),
    ],
)
def test_clean_text(text: str, cleaned: str) -> None:
    assert clean_text(text) == cleaned


@pytest.mark.parametrize(
    ("a", "b", "iou"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 1, 1], [0, 0, 1, 1], 0.0),
        ([0, 0, 2, 2], [0, 0, 2, 2], 1.0),
        ([0, 0, 10, 10], [5, 5, 15, 15], 25 / 175),
        ([0, 0, 10, 10, 99], [0, 0, 10, 10], 1.0),
        ([10**18, 0, 10**18 + 4, 4], [10**18 + 2, 0, 10**18 + 6, 4], 8 / 24),
        ([0.5, 0, 10, 10], [0, 0, 10, 10], 0.95),
    ],
)
def test_iou_pix(a: list[float], b: list[float], iou: float) -> None:
    assert iou_pix(a, b) == iou


def test_iou_pix_errors_propagate() -> None:
    with pytest.raises(ZeroDivisionError):
        iou_pix([0, 0, 0, 0], [0, 0, 0, 0])
    with pytest.raises(IndexError):
        iou_pix([0, 0, 1], [0, 0, 1, 1])
    assert str(iou_pix([0, 0, 5, 10], [10, 0, 0, 10])) == "-0.0"


def _indel_ratio_table(a: str, b: str) -> float:
    if not a and not b:
        return 1.0
    prev = [0] * (len(b) + 1)
    for ch in a:
        cur = [0]
        for j, other in enumerate(b):
            cur.append(prev[j] + 1 if ch == other else max(prev[j + 1], cur[j]))
        prev = cur
    return 1 - (len(a) + len(b) - 2 * prev[-1]) / (len(a) + len(b))


@settings(max_examples=400)
@given(st.text(alphabet="abcé ", max_size=40), st.text(alphabet="abcé ", max_size=90))
def test_indel_ratio_equals_the_dynamic_programme(a: str, b: str) -> None:
    assert indel_ratio(a, b) == _indel_ratio_table(a, b)
