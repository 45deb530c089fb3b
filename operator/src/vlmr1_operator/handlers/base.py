"""What every controller shares: one reconcile at a time per object, read afresh; when it is
due next (resync.py); metrics; invalid specs reported once; status written only when it
changed; Events."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from vlmr1_core.api.common import Condition
from vlmr1_operator import k8s
from vlmr1_operator.conditions import set_condition
from vlmr1_operator.metrics import OperatorMetrics
from vlmr1_operator.resync import DueQueue, Key
from vlmr1_operator.settings import OperatorSettings

log = logging.getLogger(__name__)
M = TypeVar("M")


class InvalidSpec(Exception):  # noqa: N818 (a verdict, not a failure of ours)
    """The object's spec is invalid. Reported on its status and in an Event; nothing is retried
    until the spec is edited (which is a watch event)."""


class ObjectLocks:
    """One lock per object, held for a whole reconcile. A lock exists only while a reconcile
    holds or waits for it, so nothing accumulates for objects long gone."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: tuple[str, str]) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                _, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)


class Controller:
    """Base of the GRPOJob and VLMService controllers; subclasses set KIND/RESOURCE and `_reconcile`."""

    KIND: str = ""
    RESOURCE: k8s.Resource

    def __init__(
        self, kube: k8s.Kube, settings: OperatorSettings, metrics: OperatorMetrics, queue: DueQueue | None = None
    ) -> None:
        self.kube, self.settings, self.metrics = kube, settings, metrics
        self.queue = queue if queue is not None else DueQueue()
        self.locks = ObjectLocks()
        self._failures: dict[tuple[str, str], int] = {}
        """Failed reconciles in a row, per object (the retry backoff)."""

    def key(self, namespace: str, name: str) -> Key:
        return (self.KIND, namespace, name)

    def reconcile(self, namespace: str, name: str, now: datetime | None = None) -> None:
        """Reconcile one object from its current state on the server, and set when it is due next.

        The object is read afresh under its lock rather than taken from the event that
        woke us: a queued watch event can carry an older status (say, before a gang
        restart was recorded), and acting on it would undo newer decisions.

        Nothing is raised for an API error (the object is due again after the retry backoff)
        or an invalid spec (reported on the object); the metrics count both.
        """
        started = time.perf_counter()
        with self.locks.hold((namespace, name)):
            mark = self.queue.mark()
            try:
                body = self.kube.get(self.RESOURCE, namespace, name)
                if body is None or body["metadata"].get("deletionTimestamp"):
                    self.forget(namespace, name)  # gone or going: garbage collection removes the children
                    return
                requeue_after = self._reconcile(body, now or datetime.now(UTC))
            except InvalidSpec:
                self.metrics.reconciled(self.KIND, "invalid", time.perf_counter() - started)
                self._failures.pop((namespace, name), None)
                self.queue.schedule(self.key(namespace, name), None, since=mark)
                return
            except k8s.ApiError as exc:
                self.metrics.reconciled(self.KIND, "error", time.perf_counter() - started)
                delay = self.retry_later(namespace, name)
                level = logging.WARNING if isinstance(exc, k8s.Transient | k8s.Conflict) else logging.ERROR
                log.log(level, "%s %s/%s: %s; retrying in %.3g s", self.KIND, namespace, name, exc, delay)
                return
            self.metrics.reconciled(self.KIND, "ok", time.perf_counter() - started)
            self._failures.pop((namespace, name), None)
            self.queue.schedule(self.key(namespace, name), requeue_after, since=mark)

    def retry_later(self, namespace: str, name: str) -> float:
        """Schedule a failed object's retry: retry_seconds, doubling per failure in a row up to
        max_retry_seconds (sooner if it is due sooner anyway). Returns the delay."""
        failures = self._failures.get((namespace, name), 0) + 1
        self._failures[(namespace, name)] = failures
        delay = min(self.settings.retry_seconds * 2.0 ** (failures - 1), self.settings.max_retry_seconds)
        self.queue.schedule(self.key(namespace, name), delay, sooner_only=True)
        return delay

    def forget(self, namespace: str, name: str) -> None:
        """Drop what is kept about an object that was deleted (subclasses add their own state)."""
        self.queue.schedule(self.key(namespace, name), None)
        self._failures.pop((namespace, name), None)

    def tracked(self) -> set[tuple[str, str]]:
        """(namespace, name) of every object something is kept about (the sweep prunes the gone)."""
        due = {(namespace, name) for kind, namespace, name in self.queue.scheduled() if kind == self.KIND}
        return due | set(self._failures)

    def _reconcile(self, body: dict[str, Any], now: datetime) -> float | None:
        """Read, plan, apply, write status; return seconds until the object is due again (None:
        only a change matters)."""
        raise NotImplementedError

    def observed_phase(self, namespace: str, name: str, phase: str) -> None:
        """Hook for the phase the object is in (metrics); nothing by default."""

    def parse(self, body: dict[str, Any], now: datetime, validate: Callable[[dict[str, Any]], tuple[M, str]]) -> M:
        """The validated object, or (invalid) a Failed/Invalid status, a Warning event and InvalidSpec.

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
        self.observed_phase(namespace, name, "Failed")
        raise InvalidSpec(message)

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
