"""Text helpers shared by the rewards, with VLM-R1's exact regex semantics.

The answer-block and fence extractions are written with ``str.find`` instead of the
lazy regexes VLM-R1 uses (``<answer>(.*?)</answer>``): the results are identical, but
a regex restarts its lazy scan at every opening tag, which is quadratic on a 20 KB
completion full of unclosed tags. ``tests/vlmr1_trainer/test_text.py`` checks the
equivalence against the regexes with hypothesis.
"""

from __future__ import annotations

import re
from typing import Any

OPEN, CLOSE = "<answer>", "</answer>"

#: VLM-R1's box literal: four unsigned (Unicode) integers, no space after ``[`` or before ``,``.
BOX_RE = re.compile(r"\[(\d+),\s*(\d+),\s*(\d+),\s*(\d+)]")


def first_block(text: str, open_tag: str = OPEN, close_tag: str = CLOSE) -> str | None:
    """Content of the first ``open(.*?)close`` match with DOTALL (FIRST-D), unstripped.

    >>> first_block("x <answer> a </answer><answer>b</answer>")
    ' a '
    >>> first_block("<answer>a") is None
    True
    """
    i = text.find(open_tag)
    if i < 0:
        return None
    start = i + len(open_tag)
    j = text.find(close_tag, start)
    return None if j < 0 else text[start:j]


def last_block(text: str, open_tag: str = OPEN, close_tag: str = CLOSE) -> str | None:
    """Content of the last non-overlapping ``open(.*?)close`` match with DOTALL (LAST-D).

    >>> last_block("<answer><answer>x</answer></answer>")
    '<answer>x'
    >>> last_block("<answer>a</answer> <answer>b</answer>")
    'b'
    """
    found = None
    pos = 0
    while True:
        i = text.find(open_tag, pos)
        if i < 0:
            return found
        start = i + len(open_tag)
        j = text.find(close_tag, start)
        if j < 0:
            return found
        found = text[start:j]
        pos = j + len(close_tag)


def first_block_nodotall(text: str) -> str | None:
    """Content of the first ``<answer>(.*?)</answer>`` match without DOTALL (FIRST-ND).

    >>> first_block_nodotall("<answer>a\\nb</answer><answer>c</answer>")
    'c'
    """
    pos = 0
    while True:
        i = text.find(OPEN, pos)
        if i < 0:
            return None
        start = i + len(OPEN)
        j = text.find(CLOSE, start)
        if j < 0:
            return None
        newline = text.rfind("\n", start, j)
        if newline < 0:
            return text[start:j]
        # Any opening tag that starts before this newline would span it too.
        pos = newline + 1


def block_or_all(block: str | None, text: str) -> str:
    """The stripped block, or the whole text stripped when there is none (VLM-R1's fallback)."""
    return (block if block is not None else text).strip()


_WS_NEWLINE = re.compile(r"(?<=\s)\n")
_WS_RETURN = re.compile(r"(?<=\s)\r")


def clean_text(text: str) -> str:
    """VLM-R1's ``clean_text``: last answer block, newlines folded, stripped, trailing dots, lowercased.

    >>> clean_text("<answer>The Cat.</answer>")
    'the cat'
    >>> [clean_text(t) for t in ("a\\n\\nb", "a \\nb", "a\\r\\nb", "abc .")]
    ['a b', 'a b', 'a b', 'abc ']
    """
    block = last_block(text)
    if block is not None:
        text = block
    if "\n" in text:
        text = _WS_NEWLINE.sub("", text).replace("\n", " ")
    if "\r" in text:
        text = _WS_RETURN.sub("", text).replace("\r", " ")
    return text.strip().rstrip(".").lower()


def json_blocks(text: str) -> list[str]:
    """Contents of every non-overlapping ```` ```json(.*?)``` ```` block (DOTALL), unstripped."""
    blocks: list[str] = []
    pos = 0
    while True:
        i = text.find("```json", pos)
        if i < 0:
            return blocks
        j = text.find("```", i + 7)
        if j < 0:
            return blocks
        blocks.append(text[i + 7 : j])
        pos = j + 3


def iou_pix(a: Any, b: Any) -> float:
    """VLM-R1's "pixel-inclusive" IoU with plain areas, in Python number semantics.

    Integers stay exact (unbounded); errors (zero union, overflow, bad boxes) propagate
    so each reward decides what they mean.

    >>> iou_pix([0, 0, 10, 10], [0, 0, 10, 10])
    1.0
    >>> iou_pix([0, 0, 1, 1], [0, 0, 1, 1])
    0.0
    >>> iou_pix([0, 0, 10, 10], [5, 5, 15, 15])
    0.14285714285714285
    """
    left = max(a[0], b[0])
    top = max(a[1], b[1])
    right = min(a[2] - 1, b[2] - 1)
    bottom = min(a[3] - 1, b[3] - 1)
    inter = (right - left + 1) * (bottom - top + 1) if left < right and top < bottom else 0
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    result: float = float(inter) / union
    return result


def indel_ratio(a: str, b: str) -> float:
    """python-Levenshtein's ``ratio``: 1 - InDel distance / (len(a) + len(b)), over code points.

    The longest common subsequence comes from Hyyrö's bit-parallel algorithm on Python
    integers, O(len(a) * len(b) / word) instead of a quadratic table.

    >>> indel_ratio("kitten", "sitting")
    0.6153846153846154
    >>> indel_ratio("", "")
    1.0
    """
    total = len(a) + len(b)
    if total == 0:
        return 1.0
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0.0
    masks: dict[str, int] = {}
    for i, ch in enumerate(b):
        masks[ch] = masks.get(ch, 0) | (1 << i)
    full = (1 << len(b)) - 1
    row = full
    for ch in a:
        match = masks.get(ch, 0)
        low = row & match
        row = ((row + low) | (row - low)) & full
    lcs = len(b) - row.bit_count()
    return 1.0 - (total - 2 * lcs) / total
