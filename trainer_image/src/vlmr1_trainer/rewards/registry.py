"""The reward registry and the base class every reward derives from.

A reward is a class registered under a name; ``build(name, **params)`` returns an
instance, which is a TRL-compatible batch callable
``(completions, **dataset_columns) -> list[float | None]``. Instances are picklable
(plain attributes, a module-level class) so they survive DataLoader workers and
``accelerate``'s process spawning.

Scoring is split in two: ``score(completion, sample)`` is the pure per-sample rule,
written so that it never raises on a malformed completion; ``__call__`` is the batch
wrapper that picks the columns, maps malformed ground truth to None and, as a last
line of defence for a multi-day run, turns an unexpected exception into 0.0 with a
logged error (tests call ``score`` directly so such bugs cannot hide there).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from vlmr1_core.errors import UserError
from vlmr1_core.reward_config import is_reference, reward_name_problem

logger = logging.getLogger(__name__)

#: Keyword arguments TRL's GRPOTrainer passes that are not dataset columns.
TRL_CONTROL_KWARGS = frozenset({"prompts", "trainer_state", "log_extra", "log_metric", "environments"})


class BadGroundTruthError(ValueError):
    """The sample's ground truth (not the completion) is malformed: the reward is None."""


class UnknownRewardError(UserError, LookupError):
    """No reward is registered under the requested name."""


class Reward:
    """Base class: subclasses set ``name``, ``columns``, ``value_range`` and ``score``."""

    name: ClassVar[str] = ""
    #: Dataset columns ``score`` reads (besides the completion), in ``sample``.
    columns: ClassVar[tuple[str, ...]] = ("solution",)
    #: Closed interval the score lies in; None scores mean a data error.
    value_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    #: Scored in the worker-process pool (math-verify, COCO AP, json-repair): CPU-heavy enough
    #: that a batch gains from several cores, and only a process can be stopped mid-computation.
    cpu_bound: ClassVar[bool] = False
    #: The score of a completion that ran over its time budget: 0.0, or None for a reward whose
    #: None means "cannot judge" (TRL then leaves the completion out of this reward's mean).
    timeout_score: ClassVar[float | None] = 0.0

    def __init__(self) -> None:
        # TRL names reward columns in its logs after ``__name__``.
        self.__name__ = self.name

    def score(self, completion: str, sample: Mapping[str, Any]) -> float | None:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """The parameters this instance was built with (for logs and manifests)."""
        return {k: getattr(self, k) for k in inspect.signature(type(self).__init__).parameters if k != "self"}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        texts, samples = self.samples(completions, kwargs)
        scores = []
        for i, (text, sample) in enumerate(zip(texts, samples, strict=True)):
            value, problem = self.score_checked(text, sample)
            if problem is not None:
                logger.warning("reward %s, sample %d of the batch: %s", self.name, i, problem)
            scores.append(value)
        return scores

    def samples(self, completions: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
        """A TRL batch as (completion texts, one ``{column: value}`` per completion with the
        columns this reward reads); a column that is not a list of one value per completion is
        a ValueError naming it."""
        texts = [completion_text(c) for c in completions]
        n = len(texts)
        picked = {k: v for k, v in kwargs.items() if k in self.columns and k not in TRL_CONTROL_KWARGS}
        for key, values in picked.items():
            if not isinstance(values, Sequence) or isinstance(values, str) or len(values) != n:
                raise ValueError(f"reward {self.name}: column {key!r} must be a list of {n} values")
        return texts, [{k: v[i] for k, v in picked.items()} for i in range(n)]

    def score_checked(self, completion: str, sample: Mapping[str, Any]) -> tuple[float | None, str | None]:
        """``score`` that never raises: (value, why it is None or a fallback 0.0, if so)."""
        value, problem, error = self.score_caught(completion, sample)
        if error is not None:
            log_error_once(self.name, error)
        return value, problem

    def score_caught(
        self, completion: str, sample: Mapping[str, Any]
    ) -> tuple[float | None, str | None, Exception | None]:
        """``score_checked`` without the logging: also the exception, for a caller (a pool worker)
        that reports it elsewhere."""
        try:
            value = self.score(completion, sample)
        except BadGroundTruthError as exc:
            return None, f"malformed ground truth, scored None: {exc}", None
        except Exception as exc:  # a scoring bug must not end a training run; it is counted and logged once
            return 0.0, f"{ERROR_PREFIX}{type(exc).__name__}: {exc}", exc
        if value is not None and not math.isfinite(value):
            # Only absurd coordinates (1e308, NaN in the JSON) get here; VLM-R1 would
            # return them as is and poison the group's advantage.
            return 0.0, f"non-finite score {value} replaced by 0.0", None
        return value, None, None


#: How a problem starts when the reward raised (callers count those as errors).
ERROR_PREFIX = "the reward raised, scored 0.0: "
_LOGGED_ERRORS: set[tuple[str, str]] = set()


def log_error_once(reward: str, exc: BaseException | str, kind: str | None = None) -> None:
    """Log a reward's exception (or its formatted traceback, from a pool worker) the first time
    this kind of error (the exception's type) occurs for this reward in this process; later ones
    are only counted, in rewards/<name>/errors."""
    kind = kind or type(exc).__qualname__
    if (reward, kind) in _LOGGED_ERRORS:
        return
    _LOGGED_ERRORS.add((reward, kind))
    note = f"scored 0.0; further {kind} errors of this reward are counted in rewards/{reward}/errors, not logged"
    if isinstance(exc, str):
        logger.error("reward %s raised %s (%s)\n%s", reward, kind, note, exc)
    else:
        logger.error("reward %s raised %s (%s)", reward, kind, note, exc_info=exc)


def completion_text(completion: Any) -> str:
    """The text of a completion given as a string or as TRL chat messages.

    >>> completion_text([{"role": "assistant", "content": "<answer>1</answer>"}])
    '<answer>1</answer>'
    >>> completion_text([{"role": "assistant", "content": [{"type": "text", "text": "a"}]}])
    'a'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        return _content_text(completion.get("content"))
    if isinstance(completion, Sequence):
        # VLM-R1 reads completion[0]["content"]; with tool turns TRL appends more
        # messages, and the answer is in the assistant turns, so those are joined.
        messages = [m for m in completion if isinstance(m, Mapping)]
        if len(messages) == 1:
            return _content_text(messages[0].get("content"))
        return "".join(_content_text(m.get("content")) for m in messages if m.get("role", "assistant") == "assistant")
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(
            part["text"] for part in content if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


_REGISTRY: dict[str, type[Reward]] = {}
R = TypeVar("R", bound=type[Reward])


def register(name: str) -> Callable[[R], R]:
    """Class decorator: register a Reward subclass under ``name`` (duplicates rejected)."""

    def decorate(cls: R) -> R:
        if name in _REGISTRY:
            raise ValueError(
                f"reward {name!r} is registered twice: {_REGISTRY[name].__qualname__} and {cls.__qualname__}"
            )
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def available() -> list[str]:
    """Registered reward names, sorted."""
    return sorted(_REGISTRY)


def reward_class(name: str) -> type[Reward]:
    """The class registered as ``name``; an UnknownRewardError suggests the closest name."""
    problem = reward_name_problem(name, _REGISTRY)
    if problem is not None:
        raise UnknownRewardError(problem)
    return _REGISTRY[name]


def build(name: str, **params: Any) -> Reward:
    """An instance of the reward ``name`` with ``params``: a registered name, or a
    ``MODULE:ATTRIBUTE`` reference (imported; see :mod:`.reference`). Unknown names or parameters
    are errors."""
    if is_reference(name):
        from vlmr1_trainer.rewards.reference import build_reference

        return build_reference(name, params)
    cls = reward_class(name)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        known = ", ".join(accepted) or "none"
        raise ValueError(f"reward {name!r} has no parameter {', '.join(unknown)}; its parameters: {known}")
    return cls(**params)
