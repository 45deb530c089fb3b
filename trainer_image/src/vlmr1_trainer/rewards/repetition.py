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

from vlmr1_trainer.rewards._text import first_block
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
    block = first_block(text, "```json", "```")
    if block is not None:
        # An empty ```json block still wins: VLM-R1 goes straight to the text path.
        return block.strip() or None
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
    pairs = []
    for item in items:
        if isinstance(item, dict):
            if "bbox_2d" in item and "label" in item:
                pairs.append((item["bbox_2d"], item["label"]))
        elif not isinstance(item, str | list):
            return 0.0  # VLM-R1 crashes on ``in`` with a number, null or boolean
        elif "bbox_2d" in item and "label" in item:
            return 0.0  # VLM-R1 crashes indexing a string or list by key
    if not pairs:
        return 0.0
    return -(1 - distinct_keys(pairs) / len(pairs))


def distinct_keys(pairs: list[tuple[Any, Any]]) -> int:
    """How many distinct VLM-R1 keys ``f"{bbox}_{label}"`` the (bbox, label) pairs give.

    When every box is a list of four ``int`` and every label a ``str`` (the usual JSON),
    two keys are equal exactly when the tuples are (an int's text has no ``]``, so the
    text splits back into the same numbers and label): the tuples are counted, without
    formatting any text. Otherwise the keys themselves are.

    >>> distinct_keys([([1, 2, 3, 4], "a"), ([1, 2, 3, 4], "a"), ([1, 2, 3, 5], "a")])
    2
    >>> distinct_keys([([1, 2, 3, 4], "a"), ("[1, 2, 3, 4]", "a"), ([1, 2, 3, 4], None), ([1, 2, 3, 4], "None")])
    2
    """
    fast = set()
    for bbox, label in pairs:
        if type(label) is str and type(bbox) is list and len(bbox) == 4:
            x1, y1, x2, y2 = bbox
            if type(x1) is int and type(y1) is int and type(x2) is int and type(y2) is int:
                fast.add((x1, y1, x2, y2, label))
                continue
        return len({f"{b!s}_{lab!s}" for b, lab in pairs})
    return len(fast)


def _text_score(text: str) -> float:
    """Minus the share of repeated 6-grams of the lowercased words (VLM-R1 counts them before lowercasing:
    ``str.lower`` maps no character to or from whitespace, so the counts agree).

    >>> _text_score("x y z x y z x y z"), _text_score("one two three four five")
    (-0.25, 0.0)
    """
    words = text.lower().split()
    total = len(words) - 5
    if total < 1:
        return 0.0
    # Counted in one pass over zip: the n-grams are never stored, only the distinct ones.
    distinct = len(set(zip(words, words[1:], words[2:], words[3:], words[4:], words[5:], strict=False)))
    return -(1 - distinct / total)


@register("repetition")
class RepetitionReward(Reward):
    """Minus the share of repeated box entries (JSON lists) or repeated word 6-grams (text)."""

    cpu_bound = True  # json-repair (pure Python, ~1 us a character) on broken JSON
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
