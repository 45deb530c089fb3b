"""kopf handlers for GRPOJobs: parse, plan (lifecycle.reconcile), apply, write status.

Event handlers only (no create/update handlers): kopf keeps no state annotations or
finalizers on our objects, every watch event of a job or of one of its pods runs the
same level-triggered reconcile, and a periodic resync (operator.py) covers time-based
transitions and trainer progress. A per-job lock keeps concurrent triggers from
interleaving.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from vlmr1_operator import k8s, progress
from vlmr1_operator.api.grpojob import GRPOJob
from vlmr1_operator.builders.common import LABEL_JOB, MANAGED_BY
from vlmr1_operator.conditions import set_condition
from vlmr1_operator.lifecycle import PodState, reconcile
from vlmr1_operator.metrics import OperatorMetrics
from vlmr1_operator.settings import OperatorSettings
from vlmr1_trainer.config import KNOWN_REWARDS

log = logging.getLogger(__name__)
GROUP, VERSION = "vlmr1.io", "v1alpha1"


class GRPOJobController:
    """Reconciles GRPOJobs; the handlers and the resync loop call `reconcile`."""

    def __init__(self, kube: k8s.Kube, settings: OperatorSettings, metrics: OperatorMetrics) -> None:
        self.kube, self.settings, self.metrics = kube, settings, metrics
        self._locks: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)

    def reconcile(self, namespace: str, name: str, now: datetime | None = None) -> None:
        """Reconcile one job from its current state on the server.

        The job is read afresh under the job's lock rather than taken from the event that
        woke us: a queued watch event can carry an older status (say, before a gang
        restart was recorded), and acting on it would undo newer decisions.
        """
        started = time.perf_counter()
        with self._locks[(namespace, name)]:
            body = self.kube.get(k8s.GRPOJOBS, namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                return  # gone or going: garbage collection removes the children
            try:
                self._reconcile(body, now or datetime.now(UTC))
                self.metrics.reconciled("GRPOJob", "ok", time.perf_counter() - started)
            except kopf.PermanentError:
                self.metrics.reconciled("GRPOJob", "invalid", time.perf_counter() - started)
                raise
            except k8s.Transient as exc:
                self.metrics.reconciled("GRPOJob", "error", time.perf_counter() - started)
                raise kopf.TemporaryError(f"GRPOJob {namespace}/{name}: {exc}", delay=5) from exc
            except k8s.ApiError:
                self.metrics.reconciled("GRPOJob", "error", time.perf_counter() - started)
                raise

    def _reconcile(self, body: dict[str, Any], now: datetime) -> None:
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        job = self._parse(body, now)
        observed = self.kube.list(k8s.PODS, namespace, {LABEL_JOB: name, "app.kubernetes.io/managed-by": MANAGED_BY})
        pods = [PodState.from_manifest(p) for p in observed if _owned_by(p, body)]
        plan = reconcile(job, pods, now, self.settings)
        for obj in plan.ensure:
            self.kube.ensure(obj)
        for pod in plan.delete_pods:
            self.kube.delete(k8s.PODS, namespace, pod)
        status = plan.status
        master = next((p for p in pods if p.index == 0 and p.ip and not p.terminating), None)
        if status.get("phase") == "Running" and master is not None and master.ip:
            report = progress.scrape(master.ip, self.settings.trainer_metrics_port)
            if report is not None:
                status = progress.fold(status, report, now)
        self._write_status(body, status)
        for event in plan.events:
            self._event(body, event.type, event.reason, event.message, now)
        self.metrics.observe_phase(namespace, name, status.get("phase", "Pending"))
        if plan.delete_job:
            log.info("deleting GRPOJob %s/%s: ttlSecondsAfterFinished passed", namespace, name)
            self.kube.delete(k8s.GRPOJOBS, namespace, name)

    def _parse(self, body: dict[str, Any], now: datetime) -> GRPOJob:
        """The validated job, or (invalid) a Failed/Invalid status, a Warning event and PermanentError."""
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            job = GRPOJob.model_validate(_without_server_fields(body))
            problem = _unknown_rewards(job, self.settings)
        except ValidationError as exc:
            problem = "; ".join(_describe(e) for e in exc.errors())
        if not problem:
            return job
        message = f"GRPOJob {namespace}/{name} is invalid: {problem}"
        status = dict(body.get("status") or {})
        conditions = _conditions(status)
        before = [c.model_dump() for c in conditions]
        set_condition(conditions, "Invalid", "True", "InvalidSpec", message, now)
        set_condition(conditions, "Failed", "True", "InvalidSpec", message, now)
        if [c.model_dump() for c in conditions] != before:
            status.update(phase="Failed", observedGeneration=body["metadata"].get("generation"))
            status["conditions"] = [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in conditions]
            self._write_status(body, status)
            self._event(body, "Warning", "InvalidSpec", message, now)
        raise kopf.PermanentError(message)

    def _event(self, body: dict[str, Any], type_: str, reason: str, message: str, now: datetime) -> None:
        stamp = now.isoformat(timespec="seconds").replace("+00:00", "Z")
        try:
            self.kube.post_event(body, type_, reason, message, stamp)
        except k8s.ApiError as exc:  # an event lost is not worth failing the reconcile for
            log.warning("could not post event %s on %s: %s", reason, body["metadata"]["name"], exc)

    def _write_status(self, body: dict[str, Any], status: dict[str, Any]) -> None:
        """Patch status only when it changed (a no-op reconcile writes nothing)."""
        current = body.get("status") or {}
        if status == current:
            return
        patch = dict(status)
        for key in current:
            patch.setdefault(key, None)  # merge patch: fields that went away are removed
        meta = body["metadata"]
        self.kube.patch_status(k8s.GRPOJOBS, meta["namespace"], meta["name"], patch)


def _owned_by(pod: dict[str, Any], body: dict[str, Any]) -> bool:
    uid = body["metadata"].get("uid")
    return any(ref.get("uid") == uid for ref in pod.get("metadata", {}).get("ownerReferences") or [])


def _without_server_fields(body: dict[str, Any]) -> dict[str, Any]:
    keep = ("apiVersion", "kind", "metadata", "spec", "status")
    data = {k: v for k, v in body.items() if k in keep}
    meta = data.get("metadata", {})
    data["metadata"] = {k: v for k, v in meta.items() if k not in ("managedFields",)}
    return data


def _conditions(status: dict[str, Any]) -> list[Any]:
    from vlmr1_operator.api.common import Condition

    return [Condition.model_validate(c) for c in status.get("conditions") or []]


def _unknown_rewards(job: GRPOJob, settings: OperatorSettings) -> str:
    known = KNOWN_REWARDS | set(settings.extra_reward_names)
    unknown = [(i, r.name) for i, r in enumerate(job.spec.rewards) if r.name not in known]
    if not unknown:
        return ""
    i, name = unknown[0]
    return (
        f"spec.rewards[{i}].name: unknown reward {name!r}; known rewards: {', '.join(sorted(known))} "
        "(a custom trainer image's rewards are added with the operator's extraRewardNames setting)"
    )


def _describe(error: Any) -> str:
    loc = ".".join(str(p) for p in error["loc"])
    field_path = (error.get("ctx") or {}).get("field_path", "")
    return f"{loc}{field_path}: {error['msg']}" if loc else error["msg"]


def register(registry: kopf.OperatorRegistry, controller: GRPOJobController) -> None:
    """The handlers: every event of a job, or of a pod the operator made for one, reconciles it."""

    @kopf.on.event(GROUP, VERSION, "grpojobs", registry=registry)
    def grpojob_event(**kwargs: Any) -> None:
        event, body = kwargs["event"], kwargs["body"]
        if event.get("type") == "DELETED":
            controller.metrics.forget(body["metadata"].get("namespace", ""), body["metadata"].get("name", ""))
            return
        controller.reconcile(body["metadata"]["namespace"], body["metadata"]["name"])

    @kopf.on.event(
        "", "v1", "pods", labels={"app.kubernetes.io/managed-by": MANAGED_BY, LABEL_JOB: kopf.PRESENT},
        registry=registry,
    )  # fmt: skip
    def pod_event(**kwargs: Any) -> None:
        meta = kwargs["body"].get("metadata", {})
        # An invalid job is reported on the job itself; a pod event is not the place to fail.
        with contextlib.suppress(kopf.PermanentError):
            controller.reconcile(meta.get("namespace", ""), meta.get("labels", {}).get(LABEL_JOB, ""))
