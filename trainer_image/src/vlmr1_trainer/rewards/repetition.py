"""``repetition``: VLM-R1's repetition penalty, in (-1, 0].

A completion that carries a JSON list of boxes is penalised for repeated
``bbox_2d``/``label`` pairs; any other completion for repeated 6-grams of words.

Deliberate difference from VLM-R1: a JSON list holding numbers, nulls or booleans
(which VLM-R1 crashes on) scores 0.0.

>>> rep = RepetitionReward()
>>> rep(['```json[{"bbox_2d": [1, 2, 3, 4], "label": "a"}, {"bbox_2d": [1, 2, 3, 4], "label": "a"}]```'])
[-0.5]
>>> rep(["a b c d e f a b c d e f", "one two three"])
[-0.1428571428571429, 0.0]
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from vlmr1_trainer.rewards._text import first_block, json_blocks
from vlmr1_trainer.rewards.registry import Reward, register

_LIST_START = re.compile(r"\[\s*\{")
_LIST_END = re.compile(r"\}\s*\]")


def _bbox_list_text(text: str) -> str | None:
    """First match of ``\\[\\s*{.*?"bbox_2d".*?"label".*?}\\s*\\]`` (DOTALL), found linearly.

    Each lazy gap takes the nearest next piece; if that fails from the first ``[{``, it
    fails from every later one too, so only the first start is tried (the regex
    itself backtracks cubically on long texts).
    """
    start = _LIST_START.search(text)
    if start is None:
        return None
    bbox = text.find('"bbox_2d"', start.end())
    if bbox < 0:
        return None
    label = text.find('"label"', bbox + 9)
    if label < 0:
        return None
    end = _LIST_END.search(text, label + 7)
    return None if end is None else text[start.start() : end.end()]


def _candidate(text: str) -> str | None:
    blocks = json_blocks(text)
    if blocks:
        # An empty ```json block still wins: VLM-R1 goes straight to the text path.
        return blocks[0].strip() or None
    fence = first_block(text, "```", "```")
    if fence is not None and fence.strip():
        return fence.strip()
    return _bbox_list_text(text)


def _decode(candidate: str) -> Any:
    try:
        return json.loads(candidate)
    except (ValueError, RecursionError):
        pass
    try:
        import json_repair

        return json.loads(json_repair.repair_json(candidate))
    except (ValueError, RecursionError, TypeError):
        return None


def _list_score(items: list[Any]) -> float:
    keys = []
    for item in items:
        if isinstance(item, dict | str | list) and "bbox_2d" in item and "label" in item:
            if not isinstance(item, dict):
                return 0.0  # VLM-R1 crashes indexing a string or list by key
            keys.append(f"{item['bbox_2d']!s}_{item['label']!s}")
        elif not isinstance(item, dict | str | list):
            return 0.0  # VLM-R1 crashes on ``in`` with a number, null or boolean
    if not keys:
        return 0.0
    return -(1 - len(set(keys)) / len(keys))


def _text_score(text: str) -> float:
    if len(text.split()) < 6:
        return 0.0
    words = text.lower().split()
    ngrams = list(zip(*(words[i:] for i in range(6)), strict=False))
    return -(1 - len(set(ngrams)) / len(ngrams))


@register("repetition")
class RepetitionReward(Reward):
    """Minus the share of repeated box entries (JSON lists) or repeated word 6-grams (text)."""

    columns = ()
    value_range = (-1.0, 0.0)

    def score(self, completion: str, sample: Mapping[str, Any]) -> float:
        if completion == "":
            return 0.0
        candidate = _candidate(completion)
        if candidate is not None:
            data = _decode(candidate)
            if isinstance(data, list) and data:
                return _list_score(data)
        return _text_score(completion)
