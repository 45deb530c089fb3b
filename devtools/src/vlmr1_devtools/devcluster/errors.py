"""Errors of the local control plane, and API errors rendered as Kubernetes ``Status`` objects."""

from __future__ import annotations

from typing import Any


class ControlPlaneError(RuntimeError):
    """The local control plane could not be built, started or reached."""


class ApiError(Exception):
    """A request the simulated API refuses; rendered as a ``Status`` with the same code and reason
    as the real API server, because clients (kopf, client-go, the Python client) branch on them."""

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


def not_found(plural: str, name: str, group: str = "") -> ApiError:
    resource = f"{plural}.{group}" if group else plural
    return ApiError(404, "NotFound", f'{resource} "{name}" not found', {"name": name, "kind": plural, "group": group})


def already_exists(plural: str, name: str, group: str = "") -> ApiError:
    resource = f"{plural}.{group}" if group else plural
    return ApiError(
        409, "AlreadyExists", f'{resource} "{name}" already exists', {"name": name, "kind": plural, "group": group}
    )


def conflict(plural: str, name: str, group: str = "") -> ApiError:
    resource = f"{plural}.{group}" if group else plural
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {resource} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        {"name": name, "kind": plural, "group": group},
    )


def invalid(kind: str, name: str, field: str, message: str, group: str = "") -> ApiError:
    """422 Invalid with one cause, worded like the real server (`Kind "name" is invalid: field: msg`)."""
    return ApiError(
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


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)
