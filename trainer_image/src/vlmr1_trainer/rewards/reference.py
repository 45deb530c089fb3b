"""Rewards users bring: ``MODULE:ATTRIBUTE`` names a function or class in the trainer's environment.

The referenced object follows TRL's reward contract: ``f(completions, **columns)`` where each
dataset column (``solution``, ``image_size``, a data line's own fields) is a keyword list as long
as ``completions``, returning one float (or None: "cannot judge") per completion. A class is
instantiated with the job's ``params`` and its instances are called the same way; a function
takes no params. Attributes the object may set: ``cpu_bound = True`` (score in the worker pool),
``timeout_score = None`` (a completion over budget is "cannot judge" rather than 0.0).

vlmr1 calls the reference one completion at a time (lists of length one), so every completion
gets its own time budget and a pool can share a batch out; within TRL's contract, a reward that
compares completions with each other cannot be written this way.

>>> import sys, types
>>> module = types.ModuleType("my_rewards")
>>> exec("def exact(completions, solution, **kw):\\n    return [float(c == s) for c, s in zip(completions, solution)]",
...      module.__dict__)
>>> sys.modules["my_rewards"] = module
>>> reward = build_reference("my_rewards:exact", {})
>>> reward(["4", "5"], solution=["4", "4"])
[1.0, 0.0]
>>> reward.columns
('solution',)
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vlmr1_core.errors import UserError
from vlmr1_trainer.rewards.registry import TRL_CONTROL_KWARGS, Reward

__all__ = [
    "ReferenceParamsError",
    "RewardContractError",
    "RewardReferenceError",
    "build_reference",
    "check_result",
    "probe",
]

#: Columns a reference that takes ``**kwargs`` does not get unless it names them: decoded images
#: would be copied to every scoring call (and every pool worker) for nothing.
HEAVY_COLUMNS = frozenset({"images", "image", "prompt", "completion_ids"})
#: Every column a ``**kwargs`` reference may receive when it names none (besides a line's own fields).
ROW_COLUMNS = ("problem", "solution", "accu_reward_method", "image_size", "input_size")


class RewardReferenceError(UserError, LookupError):
    """A ``MODULE:ATTRIBUTE`` reward that cannot be imported or is not a reward."""


class ReferenceParamsError(RewardReferenceError):
    """The referenced reward cannot be built with the job's params."""


class RewardContractError(ValueError):
    """A reward broke TRL's contract on a call: wrong count, or a value that is not a number."""


def _import(reference: str) -> Any:
    module_name, _, attribute = reference.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module's own code failing on import
        raise RewardReferenceError(
            f"reward {reference}: cannot import module {module_name}: {type(exc).__name__}: {exc}",
            fix="install the module in the trainer image, or ship it with spec.rewardCode "
            "(`vlmr1 rewards score --path DIR` locally)",
        ) from exc
    for part in attribute.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n in dir(obj) if not n.startswith("_"))
            raise RewardReferenceError(
                f"reward {reference}: module {module_name} has no attribute {attribute!r} "
                f"(it has: {', '.join(names[:20]) or 'nothing public'})",
                fix="correct the name after the colon",
            )
        obj = getattr(obj, part)
    return obj


def _accepts_completions(func: Callable[..., Any]) -> tuple[tuple[str, ...] | None, str | None]:
    """(the columns it names, or None when it takes **kwargs and names none; why it cannot be
    called as f(completions, **columns), or None)."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None, None  # a builtin or C callable: the probe batch decides
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    has_var_kw = any(p.kind == p.VAR_KEYWORD for p in params)
    names_completions = any(p.name == "completions" and p.kind != p.POSITIONAL_ONLY for p in params)
    if not positional and not names_completions and not any(p.kind == p.VAR_POSITIONAL for p in params):
        return None, "it takes no completions argument (TRL calls f(completions, **columns))"
    named = tuple(
        p.name
        for p in params[1:]
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in TRL_CONTROL_KWARGS
    )
    return (None if has_var_kw and not named else named), None


def required_columns(func: Callable[..., Any]) -> tuple[str, ...]:
    """The columns ``func`` names without a default: the data must have them.

    >>> required_columns(lambda completions, solution, defects=None, **kw: [])
    ('solution',)
    """
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return ()
    return tuple(
        p.name
        for p in params[1:]
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "completions"
    )


class ReferenceReward(Reward):
    """A referenced function or instance behind the Reward interface (one completion per call)."""

    def __init__(self, reference: str, func: Callable[..., Any], columns: tuple[str, ...] | None) -> None:
        self.name = reference  # type: ignore[misc]  # per instance: the reference is the name
        super().__init__()
        self.func = func
        self.required = required_columns(func)
        self.pass_all = columns is None
        self.columns = columns if columns is not None else ROW_COLUMNS  # type: ignore[misc]
        self.cpu_bound = bool(getattr(func, "cpu_bound", False))  # type: ignore[misc]
        self.timeout_score = getattr(func, "timeout_score", 0.0)  # type: ignore[misc]
        low_high = getattr(func, "value_range", None)
        if low_high is not None:
            self.value_range = tuple(low_high)  # type: ignore[misc]

    def params(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        return f"ReferenceReward({self.name!r})"

    def samples(self, completions: Any, kwargs: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
        if self.pass_all:
            # Every column but the heavy ones: a data line's own fields are the point of **kwargs.
            extra = tuple(k for k in kwargs if k not in HEAVY_COLUMNS and k not in TRL_CONTROL_KWARGS)
            self.columns = tuple(dict.fromkeys((*ROW_COLUMNS, *extra)))  # type: ignore[misc]
        return super().samples(completions, kwargs)

    def score(self, completion: str, sample: Mapping[str, Any]) -> float | None:
        result = self.func([completion], **{k: [v] for k, v in sample.items()})
        return check_result(self.name, result, 1)[0]


def probe(reward: ReferenceReward, texts: Sequence[str], samples: Sequence[Mapping[str, Any]]) -> None:
    """Call the referenced function on ``texts`` as one batch, then on the first alone, as TRL
    would; a RewardContractError when either answer breaks the contract (the reward's own
    exceptions propagate). Two sizes, so a reward answering a fixed-length list is caught."""
    for size in (len(texts), 1):
        batch = samples[:size]
        keys = sorted({k for sample in batch for k in sample if reward.pass_all or k in reward.columns})
        columns = {k: [sample.get(k) for sample in batch] for k in keys}
        check_result(reward.name, reward.func(list(texts[:size]), **columns), size)


def check_result(name: str, result: Any, expected: int) -> list[float | None]:
    """``result`` as floats and Nones, or a RewardContractError naming the reward and the fault.

    >>> check_result("r", [1, None, 0.5], 3)
    [1.0, None, 0.5]
    >>> check_result("r", [1.0], 2)
    Traceback (most recent call last):
    ...
    vlmr1_trainer.rewards.reference.RewardContractError: reward r returned 1 score(s) for 2 completion(s)
    """
    if isinstance(result, str | bytes | Mapping) or not hasattr(result, "__len__"):
        raise RewardContractError(f"reward {name} returned {type(result).__name__}, not a list of {expected} score(s)")
    values = list(result)
    if len(values) != expected:
        raise RewardContractError(f"reward {name} returned {len(values)} score(s) for {expected} completion(s)")
    out: list[float | None] = []
    for i, raw in enumerate(values):
        if raw is None:
            out.append(None)
            continue
        item = getattr(raw, "item", None)  # a numpy or torch scalar
        value = item() if callable(item) and not isinstance(raw, int | float) else raw
        if not isinstance(value, int | float):
            raise RewardContractError(
                f"reward {name} returned {value!r} ({type(value).__name__}) at position {i}: "
                "a score is a number or None"
            )
        number = float(value)
        out.append(number if math.isfinite(number) else 0.0)
    return out


def build_reference(reference: str, params: Mapping[str, Any]) -> Reward:
    """The reward ``reference`` names, with ``params`` (a class's constructor arguments); a
    RewardReferenceError naming the reward for anything that cannot work."""
    obj = _import(reference)
    if isinstance(obj, Reward):
        raise RewardReferenceError(f"reward {reference} is an instance; name its class so params can build it")
    if inspect.isclass(obj):
        try:
            func = obj(**params)
        except TypeError as exc:
            raise ReferenceParamsError(
                f"reward {reference}: the class does not take params {dict(params)!r}: {exc}"
            ) from exc
        if not callable(func):
            raise RewardReferenceError(f"reward {reference}: instances of the class are not callable (no __call__)")
        if isinstance(func, Reward):
            return func  # a vlmr1 Reward subclass shipped by the user: it scores per sample itself
    elif callable(obj):
        if params:
            raise ReferenceParamsError(
                f"reward {reference} is a function and takes no params (got {', '.join(sorted(params))}); "
                "make it a class whose constructor takes them"
            )
        func = obj
    else:
        raise RewardReferenceError(f"reward {reference} is a {type(obj).__name__}, not a function or class")
    if inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(getattr(func, "__call__", None)):  # noqa: B004
        raise RewardReferenceError(f"reward {reference} is async; vlmr1 scores with plain functions")
    columns, problem = _accepts_completions(func)
    if problem is not None:
        raise RewardReferenceError(f"reward {reference}: {problem}")
    return ReferenceReward(reference, func, columns)
