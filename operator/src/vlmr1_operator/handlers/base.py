"""What every controller shares: one reconcile at a time per object, read afresh; metrics;
invalid specs reported once; status written only when it changed; Events."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import kopf
from pydantic import ValidationError

from vlmr1_core.api.common import Condition
from vlmr1_operator import k8s
from vlmr1_operator.conditions import set_condition
from vlmr1_operator.metrics import OperatorMetrics
from vlmr1_operator.settings import OperatorSettings

log = logging.getLogger(__name__)
M = TypeVar("M")


class Controller:
    """Base of the GRPOJob and VLMService controllers; subclasses set KIND/RESOURCE and `_reconcile`."""

    KIND: str = ""
    RESOURCE: k8s.Resource

    def __init__(self, kube: k8s.Kube, settings: OperatorSettings, metrics: OperatorMetrics) -> None:
        self.kube, self.settings, self.metrics = kube, settings, metrics
        self._locks: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)

    def reconcile(self, namespace: str, name: str, now: datetime | None = None) -> None:
        """Reconcile one object from its current state on the server.

        The object is read afresh under its lock rather than taken from the event that
        woke us: a queued watch event can carry an older status (say, before a gang
        restart was recorded), and acting on it would undo newer decisions.
        """
        started = time.perf_counter()
        with self._locks[(namespace, name)]:
            body = self.kube.get(self.RESOURCE, namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                return  # gone or going: garbage collection removes the children
            try:
                self._reconcile(body, now or datetime.now(UTC))
                self.metrics.reconciled(self.KIND, "ok", time.perf_counter() - started)
            except kopf.PermanentError:
                self.metrics.reconciled(self.KIND, "invalid", time.perf_counter() - started)
                raise
            except k8s.Transient as exc:
                self.metrics.reconciled(self.KIND, "error", time.perf_counter() - started)
                raise kopf.TemporaryError(f"{self.KIND} {namespace}/{name}: {exc}", delay=5) from exc
            except k8s.ApiError:
                self.metrics.reconciled(self.KIND, "error", time.perf_counter() - started)
                raise

    def _reconcile(self, body: dict[str, Any], now: datetime) -> None:
        raise NotImplementedError

    def parse(self, body: dict[str, Any], now: datetime, validate: Callable[[dict[str, Any]], tuple[M, str]]) -> M:
        """The validated object, or (invalid) a Failed/Invalid status, a Warning event and PermanentError.

        `validate` returns the model and an extra problem the schema cannot see ("" if none).
        """
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            obj, problem = validate(without_server_fields(body))
        except ValidationError as exc:
            problem = "; ".join(describe(e) for e in exc.errors())
        if not problem:
            return obj
        message = f"{self.KIND} {namespace}/{name} is invalid: {problem}"
        status = dict(body.get("status") or {})
        conditions = [Condition.model_validate(c) for c in status.get("conditions") or []]
        before = [c.model_dump() for c in conditions]
        set_condition(conditions, "Invalid", "True", "InvalidSpec", message, now)
        set_condition(conditions, "Failed", "True", "InvalidSpec", message, now)
        # observedGeneration moves even when the message does not: an edit that is still invalid in
        # the same way has been seen (GitOps health checks wait on it); write_status skips no-ops.
        status.update(phase="Failed", observedGeneration=body["metadata"].get("generation"))
        status["conditions"] = [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in conditions]
        self.write_status(body, status)
        if [c.model_dump() for c in conditions] != before:
            self.event(body, "Warning", "InvalidSpec", message, now)
        raise kopf.PermanentError(message)

    def event(self, body: dict[str, Any], type_: str, reason: str, message: str, now: datetime) -> None:
        stamp = now.isoformat(timespec="seconds").replace("+00:00", "Z")
        try:
            self.kube.post_event(body, type_, reason, message, stamp)
        except k8s.ApiError as exc:  # an event lost is not worth failing the reconcile for
            log.warning("could not post event %s on %s: %s", reason, body["metadata"]["name"], exc)

    def write_status(self, body: dict[str, Any], status: dict[str, Any]) -> None:
        """Patch status only when it changed (a no-op reconcile writes nothing)."""
        current = body.get("status") or {}
        if status == current:
            return
        patch = dict(status)
        for key in current:
            patch.setdefault(key, None)  # merge patch: fields that went away are removed
        meta = body["metadata"]
        self.kube.patch_status(self.RESOURCE, meta["namespace"], meta["name"], patch)


def owned_by(child: dict[str, Any], body: dict[str, Any]) -> bool:
    uid = body["metadata"].get("uid")
    return any(ref.get("uid") == uid for ref in child.get("metadata", {}).get("ownerReferences") or [])


def without_server_fields(body: dict[str, Any]) -> dict[str, Any]:
    data = {k: v for k, v in body.items() if k in ("apiVersion", "kind", "metadata", "spec", "status")}
    data["metadata"] = {k: v for k, v in data.get("metadata", {}).items() if k != "managedFields"}
    return data


def describe(error: Any) -> str:
    loc = ".".join(str(p) for p in error["loc"])
    field_path = (error.get("ctx") or {}).get("field_path", "")
    return f"{loc}{field_path}: {error['msg']}" if loc else str(error["msg"])
