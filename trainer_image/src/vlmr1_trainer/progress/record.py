"""The normalised per-step progress record and its pure mapping from TRL's logs.

TRL's ``GRPOTrainer.log`` averages its metrics over the logging window and hands the
Trainer a flat dict; its names move between TRL releases, so this module is the one
place that knows them. Everything here is pure (the timestamp and timings come in as
arguments) so it is tested without a trainer or a clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "ProgressRecord",
    "RewardStats",
    "estimate_eta",
    "is_training_log",
    "record_from_logs",
    "step_timing",
]

# TRL key -> ProgressRecord field, for the scalar fields; the first key present wins.
_SCALAR_KEYS: dict[str, tuple[str, ...]] = {
    "reward_mean": ("reward",),
    "reward_std": ("reward_std",),
    "kl": ("kl",),
    "completion_length": ("completions/mean_length",),
    # grpo/bnpo/dr_grpo/dapo log the share of tokens clipped on either side as
    # region_mean; cispo logs its own one-sided ratio.
    "clip_ratio": ("clip_ratio/region_mean", "cispo_clip_ratio"),
    "learning_rate": ("learning_rate",),
    "loss": ("loss",),
    "grad_norm": ("grad_norm",),
    "entropy": ("entropy",),
}
_REWARD_PREFIX = "rewards/"
_REWARD_STATS = ("mean", "std", "timeouts", "errors", "failures")


@dataclass(frozen=True)
class RewardStats:
    """One reward function over the logging window: its mean and standard deviation, and the
    mean count per scored batch of completions over its time budget, of completions it raised
    on, and (remote rewards) of completions whose request failed (vlmr1_trainer.rewards.scoring)."""

    mean: float | None = None
    std: float | None = None
    timeouts: float | None = None
    errors: float | None = None
    failures: float | None = None


@dataclass(frozen=True)
class ProgressRecord:
    """What rank 0 reports per logging step; a value TRL did not log (or logged as NaN) is None."""

    step: int
    max_steps: int | None
    timestamp: float
    """Seconds since the epoch (wall clock) when the step was logged."""
    epoch: float | None = None
    reward_mean: float | None = None
    reward_std: float | None = None
    rewards: dict[str, RewardStats] = field(default_factory=dict)
    """Per reward function, by the function's ``__name__`` (TRL's ``rewards/<name>/mean|std``)."""
    kl: float | None = None
    """None when TRL computes no KL (``beta`` = 0, its default)."""
    completion_length: float | None = None
    """Mean completion length in tokens."""
    clip_ratio: float | None = None
    learning_rate: float | None = None
    loss: float | None = None
    grad_norm: float | None = None
    entropy: float | None = None
    samples_per_second: float | None = None
    """Completions trained on per second between the previous logging step and this one."""
    step_time_seconds: float | None = None
    eta_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (nested ``rewards`` as ``{name: {mean, std}}``)."""
        return asdict(self)


def _number(value: Any) -> float | None:
    # TRL logs None for a metric with no valid value in the window, and NaN can slip through
    # from a single batch; neither is a number the operator can fold into a status.
    if isinstance(value, bool) or value is None:
        return None
    item = getattr(value, "item", None)
    if callable(item):
        try:
            value = item()
        except (TypeError, ValueError, RuntimeError):
            return None
    if not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _first(logs: Mapping[str, Any], keys: tuple[str, ...]) -> float | None:
    for key in keys:
        if key in logs:
            return _number(logs[key])
    return None


def _rewards(logs: Mapping[str, Any]) -> dict[str, RewardStats]:
    names: dict[str, dict[str, float | None]] = {}
    for key, value in logs.items():
        if not key.startswith(_REWARD_PREFIX):
            continue
        # The name may itself contain "/" (TRL uses a reward model's id), so split from the right.
        name, _, stat = key[len(_REWARD_PREFIX) :].rpartition("/")
        if name and stat in _REWARD_STATS:
            names.setdefault(name, {})[stat] = _number(value)
    return {name: RewardStats(**stats) for name, stats in sorted(names.items())}


def is_training_log(logs: Mapping[str, Any]) -> bool:
    """True for the logs of a training step (not evaluation, not the end-of-training summary).

    >>> is_training_log({"loss": 0.1, "reward": 0.5}), is_training_log({"eval_reward": 0.5})
    (True, False)
    >>> is_training_log({"train_runtime": 12.0, "train_loss": 0.1})
    False
    """
    return "loss" in logs or "reward" in logs


def step_timing(
    previous_time: float | None,
    previous_step: int | None,
    now: float,
    step: int,
    samples_per_step: int | None,
) -> tuple[float | None, float | None]:
    """``(step_time_seconds, samples_per_second)`` between two logging points, or Nones.

    >>> step_timing(100.0, 10, 130.0, 20, 64)
    (3.0, 21.333333333333332)
    >>> step_timing(None, None, 130.0, 20, 64)
    (None, None)
    """
    if previous_time is None or previous_step is None:
        return None, None
    steps, seconds = step - previous_step, now - previous_time
    if steps <= 0 or seconds <= 0:
        return None, None
    rate = steps * samples_per_step / seconds if samples_per_step else None
    return seconds / steps, rate


def estimate_eta(step: int, max_steps: int | None, step_time_seconds: float | None) -> float | None:
    """Seconds left at the current pace, or None when unknown.

    >>> estimate_eta(20, 100, 3.0)
    240.0
    """
    if step_time_seconds is None or not max_steps or max_steps <= 0:
        return None
    return max(max_steps - step, 0) * step_time_seconds


def record_from_logs(
    logs: Mapping[str, Any],
    *,
    step: int,
    max_steps: int | None,
    timestamp: float,
    epoch: float | None = None,
    samples_per_second: float | None = None,
    step_time_seconds: float | None = None,
    eta_seconds: float | None = None,
) -> ProgressRecord:
    """Map one TRL ``GRPOTrainer`` log dict to a ProgressRecord.

    Read keys: ``reward``, ``reward_std``, ``rewards/<name>/mean|std|timeouts|errors|failures``,
    ``kl``, ``completions/mean_length``, ``clip_ratio/region_mean`` (else
    ``cispo_clip_ratio``), ``learning_rate``, ``loss``, ``grad_norm``, ``entropy`` and
    ``epoch`` (the Trainer adds it; ``epoch`` here is the fallback). Missing keys, None,
    NaN and infinities give None.
    """
    scalars = {name: _first(logs, keys) for name, keys in _SCALAR_KEYS.items()}
    logged_epoch = _number(logs.get("epoch"))
    return ProgressRecord(
        step=step,
        max_steps=max_steps if max_steps and max_steps > 0 else None,
        timestamp=timestamp,
        epoch=logged_epoch if logged_epoch is not None else _number(epoch),
        rewards=_rewards(logs),
        samples_per_second=_number(samples_per_second),
        step_time_seconds=_number(step_time_seconds),
        eta_seconds=_number(eta_seconds),
        **scalars,
    )
