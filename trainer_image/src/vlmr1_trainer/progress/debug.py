"""DEBUG mode: dump sampled completions with their scores, as VLM-R1's ``DEBUG_MODE`` does.

VLM-R1 appends each completion, its solution and its reward to ``LOG_PATH`` when
``DEBUG_MODE=true``. Here a ``CompletionDumper`` wraps each reward callable and appends
JSON lines to ``<output_dir>/completions.jsonl`` instead, on rank 0 only and at most
``max_per_step`` completions per step and reward, so a long run cannot fill a disk.

The wrapper is a module-level class with plain attributes, so it pickles like the
rewards it wraps; it keeps the wrapped ``__name__`` so TRL's logs (``rewards/<name>/mean``)
are unchanged.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from vlmr1_trainer.progress.jsonl import JsonlWriter
from vlmr1_trainer.rewards.registry import completion_text

__all__ = ["COMPLETIONS_FILE", "DEFAULT_MAX_PER_STEP", "CompletionDumper", "debug_enabled", "wrap_rewards"]

COMPLETIONS_FILE = "completions.jsonl"
DEFAULT_MAX_PER_STEP = 8

RewardFunc = Callable[..., list[float | None]]


def debug_enabled(environ: Mapping[str, str] | None = None, flag: bool = False) -> bool:
    """True when ``flag`` is set or ``DEBUG_MODE`` is ``true`` or ``1`` (any case) in ``environ``.

    >>> debug_enabled({"DEBUG_MODE": "true"}), debug_enabled({"DEBUG_MODE": "0"}), debug_enabled({}, flag=True)
    (True, False, True)
    """
    env = os.environ if environ is None else environ
    return flag or env.get("DEBUG_MODE", "").strip().lower() in ("true", "1")


def prompt_text(prompt: Any) -> str:
    """The text of a prompt given as a string or as chat messages (images left out).

    >>> prompt_text([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where?"}]}])
    'Where?'
    """
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Mapping):
        prompt = [prompt]
    if not isinstance(prompt, Sequence):
        return ""
    parts = []
    for message in prompt:
        if not isinstance(message, Mapping):
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, Sequence):
            parts.extend(p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str))
    return "\n".join(parts)


def _is_async(func: Any) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(getattr(func, "__call__", None))  # noqa: B004


def _column(kwargs: Mapping[str, Any], name: str, index: int) -> Any:
    values = kwargs.get(name)
    if isinstance(values, Sequence) and not isinstance(values, str) and index < len(values):
        return values[index]
    return None


class CompletionDumper:
    """A reward callable that scores with ``reward`` and, on rank 0, dumps what it scored.

    Each call appends, for at most ``max_per_step`` completions per training step (the
    ``trainer_state.global_step`` TRL passes: optimizer steps completed when the batch was
    scored; calls without it share one budget), a line ``{"event": "completion", "step",
    "reward", "prompt", "completion", "solution", "score", "outcome", "timestamp"}`` — outcome
    is ok, timeout (over the time budget), error (the reward raised) or bad_ground_truth, when
    the wrapped reward reports it (vlmr1_trainer.rewards.scoring), else None. Other ranks
    (``enabled=False``) only score. Dumping never changes the scores and never raises.
    """

    def __init__(
        self,
        reward: RewardFunc,
        output_dir: Path,
        *,
        enabled: bool = True,
        max_per_step: int = DEFAULT_MAX_PER_STEP,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if _is_async(reward):
            # TRL awaits async rewards only when the callable it holds is async itself.
            raise TypeError(f"CompletionDumper cannot wrap the async reward {reward!r}")
        if max_per_step < 0:
            raise ValueError(f"max_per_step must be >= 0, got {max_per_step}")
        self.reward = reward
        self.__name__: str = getattr(reward, "__name__", type(reward).__name__)
        self.enabled = enabled
        self.max_per_step = max_per_step
        self.clock = clock
        self.writer = JsonlWriter(Path(output_dir) / COMPLETIONS_FILE)
        self._step: int | None = None
        self._dumped = 0

    def __repr__(self) -> str:
        return f"CompletionDumper({self.reward!r}, enabled={self.enabled}, max_per_step={self.max_per_step})"

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        scores = self.reward(completions, **kwargs)
        if self.enabled and self.max_per_step > 0:
            self._dump(completions, scores, kwargs)
        return scores

    def _dump(self, completions: Sequence[Any], scores: Sequence[float | None], kwargs: Mapping[str, Any]) -> None:
        state = kwargs.get("trainer_state")
        step = getattr(state, "global_step", None)
        if step != self._step:
            self._step, self._dumped = step, 0
        room = min(self.max_per_step - self._dumped, len(completions), len(scores))
        if room <= 0:
            return
        now = self.clock()
        outcomes = getattr(self.reward, "last_outcomes", None) or []
        rows: list[Mapping[str, Any]] = []
        for i in range(room):
            prompt = _column(kwargs, "prompts", i)
            rows.append(
                {
                    "event": "completion",
                    "step": step,
                    "reward": self.__name__,
                    "prompt": prompt_text(prompt) if prompt is not None else None,
                    "completion": completion_text(completions[i]),
                    "solution": _column(kwargs, "solution", i),
                    "score": scores[i],
                    "outcome": outcomes[i] if i < len(outcomes) else None,
                    "timestamp": now,
                }
            )
        self._dumped += room
        self.writer.write_many(rows)


def wrap_rewards(
    rewards: Sequence[RewardFunc],
    output_dir: Path,
    *,
    is_main_process: bool,
    max_per_step: int = DEFAULT_MAX_PER_STEP,
) -> list[RewardFunc]:
    """Every reward wrapped in a CompletionDumper (dumping only when ``is_main_process``)."""
    return [CompletionDumper(r, output_dir, enabled=is_main_process, max_per_step=max_per_step) for r in rewards]
