"""Bounded, parallel scoring: no completion can hang or crash a training step.

Every completion is scored under a time budget (``scoring.timeoutSeconds``, or the reward's own).
A completion over it scores the reward's ``timeout_score`` (0.0, or None for rewards whose None
means "cannot judge") and is counted; a reward that raises scores 0.0, is counted and is logged
once per kind of error. Counts reach TRL's logs as ``rewards/<name>/timeouts`` and
``rewards/<name>/errors`` (through the ``log_metric`` TRL passes to reward functions: the mean
count per scored batch over the logging window).

Two ways to enforce the budget, by what the reward is:

- **In-process** (cheap rewards: format, rec_iou, mcq): a repeating interval timer raises in the
  scoring thread. It interrupts Python code and regular expressions; it cannot stop a C call
  that never returns to the interpreter, which is why heavy rewards go to the pool. Off the
  main thread (signals cannot be used there) the time is measured and an over-budget score is
  replaced after the fact.
- **Pool** (``cpu_bound`` rewards: math-verify, COCO AP, json-repair, references that say so): a
  batch is shared out over worker processes started once per run, so throughput grows with
  cores; a worker over budget is killed and replaced in the background.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from vlmr1_trainer.rewards.pool import WorkerPool
from vlmr1_trainer.rewards.registry import ERROR_PREFIX, Reward, log_error_once

__all__ = ["Outcome", "Scored", "ScoredReward", "classify", "score_in_process"]

logger = logging.getLogger(__name__)

Outcome = Literal["ok", "bad_ground_truth", "error", "timeout"]
#: Interval of the repeated timer signal after the first: code that swallows the first
#: exception with a bare ``except`` is interrupted again.
_REARM_SECONDS = 0.05


@dataclass(frozen=True)
class Scored:
    """One completion's score and what happened."""

    value: float | None
    outcome: Outcome
    problem: str | None = None
    """Why the value is None or a fallback (for a log line)."""


def classify(value: float | None, problem: str | None) -> Scored:
    """A ``score_checked`` result as a Scored.

    >>> classify(None, "malformed ground truth, scored None: x").outcome
    'bad_ground_truth'
    >>> classify(0.0, ERROR_PREFIX + "KeyError: 'a'").outcome
    'error'
    """
    if problem is None:
        return Scored(value, "ok")
    if problem.startswith(ERROR_PREFIX):
        return Scored(value, "error", problem)
    if value is None:
        return Scored(value, "bad_ground_truth", problem)
    return Scored(value, "ok", problem)


class _OverBudget(BaseException):
    """Raised in the scoring thread by the timer (a BaseException: ``except Exception`` in a
    reward must not swallow it)."""


def _raise_over_budget(signum: int, frame: Any) -> None:
    raise _OverBudget


@contextmanager
def _timer_signal() -> Iterator[bool]:
    """Install the over-budget handler for a batch; yields whether the timer can be used."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = signal.signal(signal.SIGALRM, _raise_over_budget)
    try:
        yield True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the body after ``seconds`` (on the main thread; elsewhere no limit).

    For one bounded call outside the per-completion path, such as the probe batch.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, _raise_over_budget)
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, seconds, _REARM_SECONDS)
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _OverBudget:
        raise TimeoutError(f"not done within {seconds:g} s") from None
    finally:
        signal.signal(signal.SIGALRM, previous)


def score_in_process(reward: Reward, text: str, sample: Mapping[str, Any], budget: float, timer: bool) -> Scored:
    """One completion scored here, under ``budget`` seconds (see the module docstring)."""
    start = time.monotonic()
    try:
        try:
            if timer:
                signal.setitimer(signal.ITIMER_REAL, budget, _REARM_SECONDS)
            value, problem, error = reward.score_caught(text, sample)
        finally:
            if timer:
                signal.setitimer(signal.ITIMER_REAL, 0)
    except _OverBudget:
        return _timed_out(reward, budget)
    if not timer and time.monotonic() - start > budget:
        return _timed_out(reward, budget)
    if error is not None:
        log_error_once(reward.name, error)
    return classify(value, problem)


def _timed_out(reward: Reward, budget: float) -> Scored:
    return Scored(reward.timeout_score, "timeout", f"over the {budget:g} s budget, scored {reward.timeout_score}")


class ScoredReward:
    """A reward as TRL calls it, scored under the budget, in the pool when it is ``cpu_bound``.

    Keeps the reward's ``__name__`` (TRL's ``rewards/<name>/mean``) and the outcomes of its last
    batch (``last_outcomes``, for the debug dumps).
    """

    def __init__(
        self, reward: Reward, budget: float, pool: WorkerPool | None = None, index: int = 0, prefix: str = ""
    ) -> None:
        self.reward = reward
        self.prefix = prefix
        """Put before every completion (the model family's completion_prefix)."""
        self.budget = budget
        self.pool = pool if reward.cpu_bound else None
        self.index = index
        self.__name__ = reward.name
        self.last_outcomes: list[Outcome] = []
        self.totals: dict[Outcome, int] = {"ok": 0, "bad_ground_truth": 0, "error": 0, "timeout": 0}

    def __repr__(self) -> str:
        where = "pool" if self.pool is not None else "in-process"
        return f"ScoredReward({self.reward!r}, budget={self.budget:g}, {where})"

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        texts, samples = self.reward.samples(completions, kwargs)
        results = self.score([self.prefix + t for t in texts] if self.prefix else texts, samples)
        self.last_outcomes = [r.outcome for r in results]
        counts = {outcome: self.last_outcomes.count(outcome) for outcome in ("timeout", "error")}
        for outcome in self.last_outcomes:
            self.totals[outcome] += 1
        for i, result in enumerate(results):
            if result.problem is not None and result.outcome != "error":  # errors are logged once per kind
                logger.warning("reward %s, sample %d of the batch: %s", self.__name__, i, result.problem)
        log_metric: Callable[[str, float], None] | None = kwargs.get("log_metric")
        if callable(log_metric):
            log_metric(f"rewards/{self.__name__}/timeouts", float(counts["timeout"]))
            log_metric(f"rewards/{self.__name__}/errors", float(counts["error"]))
        return [r.value for r in results]

    def score(self, texts: Sequence[str], samples: Sequence[Mapping[str, Any]]) -> list[Scored]:
        """Score a batch of (text, columns) pairs: in the pool, or here one by one."""
        if self.pool is not None:
            return self.pool.score(self.index, list(zip(texts, samples, strict=True)), self.budget, self.reward)
        with _timer_signal() as timer:
            return [
                score_in_process(self.reward, t, s, self.budget, timer) for t, s in zip(texts, samples, strict=True)
            ]
