"""Which checkpoint to promote (best, latest, step=N) and whether it passes the gates.

Pure functions over ``(step, uri, digest, metrics)`` candidates, so the cluster path (a
GRPOJob's status) and the local path (a run folder's manifests) choose the same way, and
tests need neither. The choice is :func:`vlmr1_core.checkpoints.select_checkpoint`, the rule
a VLMService's ``model.fromJob`` resolves by in the operator; its "best" is
:func:`vlmr1_core.checkpoints.best_index`, which the trainer's pruning and the operator's
status use too.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vlmr1_cli.gitops import PromoteError
from vlmr1_core.checkpoints import Selector, metric_value, select_checkpoint

__all__ = [
    "Candidate",
    "Gate",
    "GateResult",
    "Selection",
    "check_gates",
    "choose",
    "parse_gate",
    "parse_selection",
    "resolve_metric",
]

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
# Two-character operators first, so ">=" is not read as ">" followed by "=0.85".
_GATE = re.compile(r"^\s*(?P<name>[^\s<>=!]+)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<value>\S+)\s*$")
_STEP = re.compile(r"^step=(\d+)$")


@dataclass(frozen=True)
class Candidate:
    """A checkpoint that may be promoted."""

    step: int
    uri: str
    """Where the serving pods find it (what the VLMService will pin)."""
    digest: str | None
    """The digest the source claims (the job's status, or the manifest read from disk)."""
    metrics: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None
    """Its folder on this machine, when known (a run folder)."""


@dataclass(frozen=True)
class Selection:
    """``best``, ``latest`` or ``step=N``."""

    kind: Literal["best", "latest", "step"]
    step: int | None = None

    def __str__(self) -> str:
        return f"step={self.step}" if self.kind == "step" else self.kind


def parse_selection(text: str) -> Selection:
    """``best``, ``latest`` or ``step=N``; anything else is an error saying so."""
    value = text.strip()
    if value in ("best", "latest"):
        return Selection(value)  # type: ignore[arg-type]
    match = _STEP.match(value)
    if match:
        return Selection("step", int(match.group(1)))
    raise PromoteError(f"--select {text!r}: expected best, latest or step=N (e.g. step=400)")


def _steps(candidates: Iterable[Candidate]) -> str:
    return ", ".join(str(c.step) for c in sorted(candidates, key=lambda c: c.step)) or "none"


def choose(
    candidates: Sequence[Candidate],
    selection: Selection,
    *,
    best_metric: str = "reward",
    greater_is_better: bool = True,
    marked_best: int | None = None,
    source: str = "the job",
) -> Candidate:
    """The candidate ``selection`` names (:func:`vlmr1_core.checkpoints.select_checkpoint`).

    ``best`` is the step ``marked_best`` when the source already chose one (a GRPOJob's
    ``status.bestCheckpoint``), else the best by ``best_metric`` (ties to the higher step).
    """
    if not candidates:
        raise PromoteError(f"{source} has no checkpoints")
    which: Selector
    if selection.kind == "step":
        assert selection.step is not None
        which = selection.step
    else:
        which = selection.kind
    index = select_checkpoint(
        [(c.step, c.metrics) for c in candidates],
        which,
        best_metric=best_metric,
        greater_is_better=greater_is_better,
        marked_best=marked_best,
    )
    if index is not None:
        return candidates[index]
    if selection.kind == "step":
        raise PromoteError(f"{source} has no checkpoint at step {selection.step} (steps: {_steps(candidates)})")
    raise PromoteError(
        f"{source} has no checkpoint with a numeric {best_metric!r} metric (its checkpoint.bestMetric), so "
        f"none is best; choose one with --select latest or --select step=N (steps: {_steps(candidates)})"
    )


@dataclass(frozen=True)
class Gate:
    """``NAME OP NUMBER``, e.g. ``rec_acc>=0.85``."""

    name: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.name} {self.op} {_number(self.threshold)}"


def parse_gate(text: str) -> Gate:
    """A gate expression; a malformed one is an error with the expected form."""
    match = _GATE.match(text)
    if match is None:
        raise PromoteError(
            f"--require {text!r}: expected NAME OP NUMBER with OP one of {', '.join(OPERATORS)}, "
            "e.g. 'rec_acc>=0.85' or 'eval/refcoco-val/rec_acc >= 0.85'"
        )
    raw = match.group("value")
    try:
        threshold = float(raw)
    except ValueError:
        threshold = math.nan
    if not math.isfinite(threshold):
        raise PromoteError(f"--require {text!r}: {raw!r} is not a finite number")
    return Gate(match.group("name"), match.group("op"), threshold)


def resolve_metric(metrics: Mapping[str, Any], name: str) -> str:
    """The metric key ``name`` means: itself, else the unique key ending in ``/name``."""
    if name in metrics:
        return name
    matches = sorted(key for key in metrics if key.endswith(f"/{name}"))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise PromoteError(
            f"metric name {name!r} is ambiguous: it matches {', '.join(matches)}; write the full name, "
            f"e.g. --require '{matches[0]}>=...'"
        )
    available = ", ".join(sorted(metrics)) or "none"
    raise PromoteError(f"the checkpoint has no metric {name!r} (its metrics: {available})")


@dataclass(frozen=True)
class GateResult:
    """A gate and the value it was checked against."""

    gate: Gate
    key: str
    """The full metric name the gate's name resolved to."""
    value: float

    def __str__(self) -> str:
        where = self.gate.name if self.key == self.gate.name else f"{self.gate.name} ({self.key})"
        return f"{where} = {_number(self.value)}, required {self.gate.op} {_number(self.gate.threshold)}"


def check_gates(gates: Sequence[Gate], metrics: Mapping[str, Any]) -> list[GateResult]:
    """Every gate checked against ``metrics``; a miss (all of them, listed) is a PromoteError."""
    results: list[GateResult] = []
    misses: list[str] = []
    for gate in gates:
        key = resolve_metric(metrics, gate.name)
        value = metric_value(metrics, key)
        if value is None:
            raise PromoteError(f"metric {key} is {metrics[key]!r}, not a number: the gate {gate} cannot pass")
        result = GateResult(gate, key, value)
        results.append(result)
        if not OPERATORS[gate.op](value, gate.threshold):
            where = gate.name if key == gate.name else f"{gate.name} ({key})"
            misses.append(f"{where} is {_number(value)}, required {gate.op} {_number(gate.threshold)}")
    if misses:
        raise PromoteError("the checkpoint misses its gates: " + "; ".join(misses))
    return results


def _number(value: float) -> str:
    """A number as people write it: 0.85, not 0.85000000000000002; 100, not 100.0."""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
