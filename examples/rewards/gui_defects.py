"""GUI defect detection with partial credit: the F1 of the predicted and true defect labels.

The built-in ``all_match`` gives 1.0 only when the whole answer equals the ground truth, so an
answer that finds one of two defects scores the same as one that finds none. ``defect_f1`` reads
each answer as a set of labels and scores the overlap:

- The labels are the text of the last ``<answer>...</answer>`` block, split on ``,``, ``;`` and
  newlines. Each label is lowercased, its runs of whitespace become one space and trailing dots
  are removed. ``no defect``, ``no defects`` and ``none`` mean "no defect" (an empty set); next
  to real labels they are ignored.
- The score is the F1 ``2 * |predicted & true| / (|predicted| + |true|)``; two empty sets
  (both say "no defect") score 1.0.
- A completion without an answer block, or whose block names nothing, scores 0.0.
- A ground truth that is not a string, has no answer block or names nothing cannot be judged:
  the score is None, and TRL leaves that sample out of this reward.

Completions may be strings or chat messages (``[{"role": "assistant", "content": ...}]``).
Standard library only, so this one file can be shipped with a job (docs/rewards.md).

>>> defect_f1(
...     [
...         "<think>Two problems.</think><answer>Missing button, text overlap</answer>",
...         "<answer>missing button.</answer>",
...         "<answer>missing button; wrong icon</answer>",
...         "<answer>no defect</answer>",
...         "missing button, text overlap",
...         [{"role": "assistant", "content": "<answer>text overlap</answer>"}],
...     ],
...     solution=["<answer> missing button, text overlap </answer>"] * 6,
... )
[1.0, 0.6666666666666666, 0.5, 0.0, 0.0, 0.6666666666666666]
>>> defect_f1(["<answer>None</answer>", "<answer>x</answer>"], solution=["<answer> no defect </answer>", "x"])
[1.0, None]
"""

from __future__ import annotations

import re
from typing import Any

OPEN, CLOSE = "<answer>", "</answer>"
NO_DEFECT = frozenset({"no defect", "no defects", "none"})
_SEPARATORS = re.compile(r"[,;\n]")
_SPACES = re.compile(r"\s+")


def text_of(completion: Any) -> str:
    """The text of a completion: a string, or the assistant turns of a list of chat messages."""
    if isinstance(completion, str):
        return completion
    parts = []
    for message in completion if isinstance(completion, list) else [completion]:
        if not isinstance(message, dict) or message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):  # multimodal content: [{"type": "text", "text": ...}]
            parts.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return "".join(parts)


def labels(text: str) -> frozenset[str] | None:
    """The defect labels of the last answer block of ``text``: empty for "no defect", None when
    there is no block or it names nothing. ``str.rfind`` rather than a lazy regex keeps this
    linear in the length of a completion full of unclosed tags.

    >>> sorted(labels("<think>...</think><answer>Text  overlap.\\nMissing button</answer>"))
    ['missing button', 'text overlap']
    >>> labels("<answer>None.</answer>"), labels("<answer> , </answer>"), labels("no tags")
    (frozenset(), None, None)
    """
    end = text.rfind(CLOSE)
    start = text.rfind(OPEN, 0, max(end, 0))
    if end < 0 or start < 0:
        return None
    block = text[start + len(OPEN) : end]
    found = {_SPACES.sub(" ", part).strip().rstrip(".").strip().lower() for part in _SEPARATORS.split(block)}
    found.discard("")
    if not found:
        return None
    return frozenset(found - NO_DEFECT)


def defect_f1(completions: list[Any], solution: list[Any], **kwargs: Any) -> list[float | None]:
    """F1 of the defect labels in each completion's answer against its solution's (or None)."""
    scores: list[float | None] = []
    for completion, truth in zip(completions, solution, strict=True):
        expected = labels(truth) if isinstance(truth, str) else None
        if expected is None:
            scores.append(None)  # malformed ground truth: cannot judge
            continue
        predicted = labels(text_of(completion))
        if predicted is None:
            scores.append(0.0)
        elif not predicted and not expected:
            scores.append(1.0)
        else:
            scores.append(2 * len(predicted & expected) / (len(predicted) + len(expected)))
    return scores
