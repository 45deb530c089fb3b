"""``length_cosine``: the cosine length reward, with the sample's real accuracy wired in.

``r = v_min + (v_max - v_min) * (1 + cos(pi * min(L, L_max) / L_max)) / 2`` where ``L``
is the completion length in tokens (TRL's ``completion_ids``, else a
``completion_length`` column). Correct answers (accuracy >= ``threshold``) get
``v_min, v_max = 0.5, 1.0``: shorter is better. Wrong answers get ``0.0, -0.5``:
a short wrong answer is penalised most, a long one (still reasoning) least.

Deliberate differences from VLM-R1, whose cosine reward hard-codes the accuracy to
1.0 (so it is a pure length penalty) and does not clamp ``L`` (so past ``L_max`` the
cosine turns round and long completions are rewarded again): here the accuracy comes
from the task's accuracy reward and ``L`` is clamped to ``L_max``.

>>> cos = LengthCosineReward(max_length=100)
>>> cos(["<answer>2</answer>"] * 3, solution=["<answer> 2 </answer>"] * 3, completion_length=[0, 100, 300])
[1.0, 0.5, 0.5]
>>> cos(["<answer>3</answer>"], solution=["<answer> 2 </answer>"], completion_length=[0])
[-0.5]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from vlmr1_trainer.rewards.registry import BadGroundTruthError, Reward, build, register


@register("length_cosine")
class LengthCosineReward(Reward):
    """Cosine-scheduled length reward whose sign follows the sample's accuracy, in [-0.5, 1].

    Parameters:
        max_length: ``L_max`` in tokens (VLM-R1: 1024).
        accuracy: the reward that decides correctness (``accuracy``; ``rec_iou`` for REC).
        accuracy_params: parameters of that reward.
        threshold: accuracy at or above which a sample is correct (VLM-R1: 0.7).
    """

    columns = (
        "solution",
        "accu_reward_method",
        "image_size",
        "input_size",
        "completion_ids",
        "completion_length",
    )
    value_range = (-0.5, 1.0)

    def __init__(
        self,
        max_length: int = 1024,
        accuracy: str = "accuracy",
        accuracy_params: Mapping[str, Any] | None = None,
        threshold: float = 0.7,
    ) -> None:
        super().__init__()
        if max_length <= 0:
            raise ValueError("length_cosine: max_length must be positive")
        if accuracy == self.name:
            raise ValueError("length_cosine cannot use itself as its accuracy reward")
        self.max_length = max_length
        self.accuracy = accuracy
        self.accuracy_params = dict(accuracy_params or {})
        self.threshold = threshold
        self._accuracy = build(accuracy, **self.accuracy_params)

    def score(self, completion: str, sample: Mapping[str, Any]) -> float | None:
        length = _length(sample)
        acc = self._accuracy.score(completion, sample)
        if acc is None:
            return None
        if acc >= self.threshold:
            v_min, v_max = 0.5, 1.0
        else:
            v_min, v_max = 0.0, -0.5
        progress = min(length, self.max_length) / self.max_length
        return v_min + (v_max - v_min) * (1.0 + math.cos(math.pi * progress)) / 2.0


def _length(sample: Mapping[str, Any]) -> int:
    ids = sample.get("completion_ids")
    if isinstance(ids, Sequence) and not isinstance(ids, str):
        return len(ids)
    if ids is not None and hasattr(ids, "__len__"):  # a tensor row
        return len(ids)
    length = sample.get("completion_length")
    if isinstance(length, int) and not isinstance(length, bool) and length >= 0:
        return length
    raise BadGroundTruthError("length_cosine needs completion_ids (from TRL) or a completion_length column")
