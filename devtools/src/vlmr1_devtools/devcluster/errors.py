"""Errors of the local control plane, and API errors rendered as Kubernetes ``Status`` objects."""

from __future__ import annotations

from typing import Any


class ControlPlaneError(RuntimeError):
    """The local control plane could not be built, started or reached."""


class StatusError(Exception):
    """A request the simulated API refuses: the Kubernetes ``Status`` error response it answers
    with (named after client-go's ``StatusError``, which is what clients turn it back into).

    It carries the same code and reason as the real API server would, because clients (kopf,
    client-go, the Python client) branch on them. Not to be confused with the operator's
    ``vlmr1_operator.k8s.ApiError``, the client side of such a response."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def not_found(plural: str, name: str, group: str = "") -> StatusError:
    resource = f"{plural}.{group}" if group else plural
    return StatusError(
        404, "NotFound", f'{resource} "{name}" not found', {"name": name, "kind": plural, "group": group}
    )


def already_exists(plural: str, name: str, group: str = "") -> StatusError:
    resource = f"{plural}.{group}" if group else plural
    return StatusError(
        409, "AlreadyExists", f'{resource} "{name}" already exists', {"name": name, "kind": plural, "group": group}
    )


def conflict(plural: str, name: str, group: str = "") -> StatusError:
    resource = f"{plural}.{group}" if group else plural
    return StatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {resource} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        {"name": name, "kind": plural, "group": group},
    )


def invalid(kind: str, name: str, field: str, message: str, group: str = "") -> StatusError:
    """422 Invalid with one cause, worded like the real server (`Kind "name" is invalid: field: msg`)."""
    return StatusError(
        422,
        "Invalid",
        f'{kind} "{name}" is invalid: {field}: {message}',
        {
            "name": name,
            "kind": kind,
            "group": group,
            "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field}],
        },
    )


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)
