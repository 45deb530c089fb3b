"""Rule-based rewards with VLM-R1's exact semantics, as TRL-compatible batch callables.

>>> from vlmr1_trainer import rewards
>>> fmt = rewards.build("format")
>>> fmt(["<think>x</think><answer>y</answer>", [{"role": "assistant", "content": "y"}]])
[1.0, 0.0]

Every reward is ``(completions, **dataset_columns) -> list[float | None]``: a
malformed completion scores 0.0, a malformed ground truth gives None (TRL ignores it).
See docs in each module for the VLM-R1 function it reproduces and every deliberate
difference. Importing this package registers all rewards; it imports neither torch
nor math-verify (that is imported when ``accuracy``/``math`` first score).
"""

from __future__ import annotations

from vlmr1_trainer.rewards import (  # noqa: F401  (importing registers the rewards)
    accuracy,
    choice,
    detection,
    format,
    length,
    rec,
    repetition,
    weighted_sum,
)
from vlmr1_trainer.rewards.accuracy import METHODS
from vlmr1_trainer.rewards.registry import (
    BadGroundTruthError,
    Reward,
    UnknownRewardError,
    available,
    build,
    completion_text,
    register,
    reward_class,
)

__all__ = [
    "METHODS",
    "BadGroundTruthError",
    "Reward",
    "UnknownRewardError",
    "available",
    "build",
    "completion_text",
    "register",
    "reward_class",
]
