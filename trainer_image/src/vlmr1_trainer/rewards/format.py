"""Format rewards: ``format`` (VLM-R1's format_reward) and ``rec_format`` (format_reward_rec).

Both are decided with a few linear searches rather than VLM-R1's lazy regexes, whose
backtracking is quadratic or worse on long completions with many tags; the tests
check the equivalence against the original patterns with hypothesis.

>>> f = FormatReward()
>>> f(["<think>a</think>\\n<answer>b</answer>", "<think>a</think><answer>b</answer>\\n"])
[1.0, 0.0]
>>> r = RecFormatReward()
>>> r(['<think>x</think><answer>{"bbox_2d": [1,2,3,4]}</answer>', "<think>x</think><answer>[1,2,3,4]</answer>"])
[1.0, 0.0]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from vlmr1_trainer.rewards._text import CLOSE
from vlmr1_trainer.rewards.registry import Reward, register

_THINK_ANSWER = re.compile(r"</think>\s*<answer>")
_BOX_LITERAL = re.compile(r"\[\d+,\s*\d+,\s*\d+,\s*\d+\]")
_CLOSE_BRACE_THEN_ANSWER = "}"


@register("format")
class FormatReward(Reward):
    """1.0 when the whole completion is ``<think>…</think>\\s*<answer>…</answer>`` (DOTALL full match).

    Nested tags, several answer blocks and a second think/answer round all match, as in
    VLM-R1; anything before ``<think>`` or after the final ``</answer>`` does not.
    """

    columns = ()

    def score(self, completion: str, sample: Mapping[str, Any]) -> float:
        if not (completion.startswith("<think>") and completion.endswith(CLOSE)):
            return 0.0
        final_close = len(completion) - len(CLOSE)
        # The answer opening must end before the final </answer>: endpos enforces it.
        return 1.0 if _THINK_ANSWER.search(completion, 7, final_close) else 0.0


@register("rec_format")
class RecFormatReward(Reward):
    """1.0 when ``<think>``, ``</think>\\s*<answer>``, ``{``, a box literal, ``}``, ``</answer>`` occur in order.

    This is VLM-R1's unanchored DOTALL search
    ``<think>.*?</think>\\s*<answer>.*?\\{.*\\[\\d+,\\s*\\d+,\\s*\\d+,\\s*\\d+\\].*\\}.*?</answer>``:
    the gaps may hold anything, even tags, so the braces may lie outside the answer.
    """

    columns = ()

    def score(self, completion: str, sample: Mapping[str, Any]) -> float:
        # Taking the earliest occurrence of each piece leaves the most room for the rest.
        think = completion.find("<think>")
        if think < 0:
            return 0.0
        opened = _THINK_ANSWER.search(completion, think + 7)
        if opened is None:
            return 0.0
        brace = completion.find("{", opened.end())
        if brace < 0:
            return 0.0
        box = _BOX_LITERAL.search(completion, brace + 1)
        if box is None:
            return 0.0
        last_close = completion.rfind(CLOSE, box.end())
        if last_close < 0:
            return 0.0
        return 1.0 if completion.find(_CLOSE_BRACE_THEN_ANSWER, box.end(), last_close) >= 0 else 0.0
