"""Kubernetes-style status conditions (metav1.Condition semantics), and the Events planners emit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from vlmr1_core.api.common import Condition

Status = Literal["True", "False", "Unknown"]
EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class Event:
    """A core/v1 Event a planner asks for (the handler posts it on the object)."""

    type: EventType
    reason: str
    message: str


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: Status,
    reason: str,
    message: str,
    now: datetime,
    *,
    report_false: bool = False,
) -> None:
    """Set a condition in place. lastTransitionTime changes only when status does. A phase
    condition that never held is not added as False (absent means it never happened);
    `report_false` adds it anyway, for conditions whose False says something (ModelResolved)."""
    for i, current in enumerate(conditions):
        if current.type != type_:
            continue
        if current.status == status and current.reason == reason and current.message == message:
            return
        moved = current.status != status
        conditions[i] = Condition(
            type=type_,
            status=status,
            reason=reason or current.reason,
            message=message or current.message,
            last_transition_time=now if moved else current.last_transition_time,
        )
        return
    if status == "True" or report_false:
        conditions.append(
            Condition(type=type_, status=status, reason=reason, message=message, last_transition_time=now)
        )


def get_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)
