"""The GRPOJob state machine, as a pure function: (job, observed pods, now) -> a plan.

Level-triggered: every reconcile looks at what exists and decides what should, whatever
event woke it. A gang is all-or-nothing: NCCL/HCCL cannot readmit a lost rank, so a failed
or vanished pod means deleting every pod and starting a new gang generation (which resumes
from the newest verified checkpoint) until runPolicy.backoffLimit is used up. A pod that
exits 2 (the trainer refused its inputs: a bad sample, a pinned model digest that does not
match) fails the job at once with the trainer's message: a new gang would fail the same way.
Pods keep fixed names, so a new generation is created only once the old pods are gone.

Spec edits: fields that shape the pods (the trainer config, resources, secrets, pod
template) are hashed into each pod; a running gang whose hash differs is restarted with
the new spec (not counted against backoffLimit). runPolicy edits apply in place. So an
edit is never half-applied: every pod of a gang runs the same spec.

Rewards the operator cannot check (MODULE:ATTRIBUTE references, remote endpoints: it holds no
reward code) are named in a RewardsNotChecked event when the first gang is made and when the
spec changes; the trainer checks them before its first step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from vlmr1_core.api.grpojob import GRPOJob, GRPOJobStatus, ReplicaCounts
from vlmr1_core.errors import EXIT_USER_ERROR
from vlmr1_operator.builders import build_grpojob
from vlmr1_operator.builders.common import LABEL_INDEX, LABEL_RESTART, Manifest
from vlmr1_operator.builders.grpojob import SPEC_HASH_ANNOTATION, spec_hash
from vlmr1_operator.conditions import Event, set_condition
from vlmr1_operator.settings import OperatorSettings

TERMINAL = ("Succeeded", "Failed")
#: The phase conditions: one per phase, True while the job is in it (plus Invalid, set by the handler).
PHASES = ("Pending", "Running", "Restarting", "Suspended", "Succeeded", "Failed")


@dataclass(frozen=True)
class PodState:
    """What the operator needs to know about one observed pod."""

    name: str
    index: int
    restart: int
    spec_hash: str
    phase: str
    terminating: bool = False
    reason: str = ""
    ip: str | None = None
    exit_code: int | None = None
    """The first terminated container's non-zero exit code (2: a user error, not worth a restart)."""
    message: str = ""
    """That container's termination message (the log's tail: the error line)."""

    @classmethod
    def from_manifest(cls, pod: Manifest) -> PodState:
        meta, status = pod.get("metadata", {}), pod.get("status") or {}
        terminated = _terminated(status)
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        return cls(
            name=meta["name"],
            index=int(labels.get(LABEL_INDEX, "-1")),
            restart=int(labels.get(LABEL_RESTART, "-1")),
            spec_hash=annotations.get(SPEC_HASH_ANNOTATION, ""),
            phase=status.get("phase") or "Pending",
            terminating=bool(meta.get("deletionTimestamp")),
            reason=_failure_reason(status),
            ip=status.get("podIP"),
            exit_code=terminated.get("exitCode"),
            message=(terminated.get("message") or "").strip(),
        )


def _terminated(status: dict[str, Any]) -> dict[str, Any]:
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated") or {}
        if terminated.get("exitCode"):
            return dict(terminated)
    return {}


def _failure_reason(status: dict[str, Any]) -> str:
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated") or {}
        if terminated.get("exitCode"):
            return f"container {container.get('name')} exited {terminated['exitCode']} ({terminated.get('reason', '')})"
    return status.get("reason") or status.get("message") or ""


@dataclass
class Plan:
    """What one reconcile does: ensure children, delete pods, write status, emit events."""

    ensure: list[Manifest] = field(default_factory=list)
    delete_pods: list[str] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    delete_job: bool = False
    requeue_after: float | None = None
    """Seconds until the job is due again though nothing changes: its activeDeadlineSeconds or
    TTL coming due, or (while Running) the next read of the trainer's progress. None: only a
    change (a watch event) is worth a reconcile."""


def plan(job: GRPOJob, pods: list[PodState], now: datetime, settings: OperatorSettings) -> Plan:
    """What to do about `job`, given its observed pods, at `now`."""
    status = job.status.model_copy(deep=True) if job.status else GRPOJobStatus()
    decided = _decide(job, status, pods, now, settings)
    status.observed_generation = job.metadata.generation
    status.replicas = _replica_counts([p for p in pods if not p.terminating and p.name not in decided.delete_pods])
    decided.status = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    if status.phase == "Running" and not decided.delete_job:
        # Progress reaches status by polling the trainer (progress.py), so a running job is due again.
        poll = settings.progress_poll_seconds
        decided.requeue_after = poll if decided.requeue_after is None else min(decided.requeue_after, poll)
    return decided


def _decide(
    job: GRPOJob, status: GRPOJobStatus, pods: list[PodState], now: datetime, settings: OperatorSettings
) -> Plan:
    policy = job.spec.run_policy
    live = [p for p in pods if not p.terminating]
    if status.phase in TERMINAL:
        return _finished(job, status, live, now)
    if policy.suspend:
        return _suspend(status, live, now)
    if status.phase == "Suspended":
        _transition(status, "Pending", "Resumed", "suspend is false: starting the gang", now)
    out = Plan()
    want = spec_hash(job)
    stale = [p for p in live if p.restart != status.restarts or p.spec_hash != want]
    if stale:
        out.delete_pods = [p.name for p in live]
        reason = "SpecChanged" if any(p.spec_hash != want for p in stale) else "OldGang"
        _transition(status, "Restarting", reason, "recreating the gang with the current spec", now)
        out.events.append(Event("Normal", reason, "the spec changed: restarting the gang with it"))
        if reason == "SpecChanged":
            out.events += _rewards_not_checked(job)
        return out
    if len(live) < len(pods):
        _transition(status, status.phase if status.phase != "Pending" else "Restarting", "Terminating",
                    "waiting for the previous gang's pods to go", now)  # fmt: skip
        return out
    failed = [p for p in live if p.phase == "Failed"]
    nodes = job.spec.resources.nodes
    partial = 0 < len(live) < nodes
    if failed or partial:
        return _gang_failure(job, status, live, failed, now)
    if not live:
        out.ensure = build_grpojob(job, settings, restart=status.restarts)
        if status.start_time is None:
            status.start_time = now
            out.events += _rewards_not_checked(job)
        phase = "Restarting" if status.restarts else "Pending"
        out.events.append(Event("Normal", "GangCreated", f"created {nodes} pod(s) (gang restart {status.restarts})"))
        _transition(status, phase, "GangCreated", f"{nodes} pod(s) created, waiting for them to run", now)
        return _with_deadline(job, status, out, now)
    # The gang exists: keep its other children in shape too (a deleted Service comes back).
    out.ensure = [o for o in build_grpojob(job, settings, restart=status.restarts) if o["kind"] != "Pod"]
    master = next((p for p in live if p.index == 0), None)
    if master is not None and master.phase == "Succeeded":
        out.delete_pods = [p.name for p in live if p.index != 0 and p.phase not in TERMINAL]
        status.completion_time = now
        out.events.append(Event("Normal", "Succeeded", "the master finished training"))
        _transition(status, "Succeeded", "MasterSucceeded", "the master pod exited 0", now)
        return _finished_requeue(job, status, out, now)
    if all(p.phase == "Running" for p in live):
        if status.phase != "Running":
            out.events.append(Event("Normal", "Running", f"all {nodes} pod(s) running"))
        _transition(status, "Running", "AllPodsRunning", f"all {nodes} pod(s) running", now)
    else:
        _transition(status, status.phase if status.phase == "Restarting" else "Pending", "PodsStarting",
                    "waiting for every pod of the gang to run", now)  # fmt: skip
    return _with_deadline(job, status, out, now)


def _rewards_not_checked(job: GRPOJob) -> list[Event]:
    """What the operator could not check: references and remote rewards (it holds no reward code
    and calls no endpoint). Said when the first gang is made and when the spec changes, not on
    every reconcile."""
    unchecked = [
        f"{r.name} (remote {r.remote.url})" if r.remote is not None else r.name
        for r in job.spec.rewards
        if r.kind != "builtin"
    ]
    if not unchecked:
        return []
    message = f"checked by the trainer before the first step, not by the operator: {', '.join(unchecked)}"
    return [Event("Normal", "RewardsNotChecked", message)]


def _gang_failure(
    job: GRPOJob, status: GRPOJobStatus, live: list[PodState], failed: list[PodState], now: datetime
) -> Plan:
    out = Plan(delete_pods=[p.name for p in live])
    missing = sorted(set(range(job.spec.resources.nodes)) - {p.index for p in live})
    what = (
        f"pod {failed[0].name} failed" + (f": {failed[0].reason}" if failed[0].reason else "")
        if failed
        else f"pod(s) of node {', '.join(map(str, missing))} disappeared"
    )
    user_error = next((p for p in failed if p.exit_code == EXIT_USER_ERROR), None)
    if user_error is not None:
        # The trainer refused the spec or its inputs (a bad sample, a digest mismatch): a restart
        # would fail the same way, so the job fails now with the trainer's own message.
        detail = user_error.message.splitlines()[-1] if user_error.message else user_error.reason
        message = f"pod {user_error.name} stopped on a user error: {detail}"
        status.completion_time = now
        out.events.append(Event("Warning", "UserError", message))
        _transition(status, "Failed", "UserError", message, now)
        return _finished_requeue(job, status, out, now)
    limit = job.spec.run_policy.backoff_limit
    if status.restarts < limit:
        status.restarts += 1
        message = f"{what}; restarting the whole gang from the newest checkpoint ({status.restarts}/{limit})"
        out.events.append(Event("Warning", "GangRestart", message))
        _transition(status, "Restarting", "PodFailed", message, now)
        return out
    message = f"{what}; backoffLimit {limit} restart(s) used up"
    status.completion_time = now
    out.events.append(Event("Warning", "BackoffLimitExceeded", message))
    _transition(status, "Failed", "BackoffLimitExceeded", message, now)
    return _finished_requeue(job, status, out, now)


def _with_deadline(job: GRPOJob, status: GRPOJobStatus, out: Plan, now: datetime) -> Plan:
    deadline = job.spec.run_policy.active_deadline_seconds
    if deadline is None or status.start_time is None:
        return out
    left = (status.start_time + timedelta(seconds=deadline) - now).total_seconds()
    if left > 0:
        out.requeue_after = left
        return out
    message = f"running longer than runPolicy.activeDeadlineSeconds ({deadline} s)"
    status.completion_time = now
    out.ensure = []
    out.delete_pods = [f"{job.metadata.name}-node-{i}" for i in range(job.spec.resources.nodes)]
    out.events.append(Event("Warning", "DeadlineExceeded", message))
    _transition(status, "Failed", "DeadlineExceeded", message, now)
    return _finished_requeue(job, status, out, now)


def _suspend(status: GRPOJobStatus, live: list[PodState], now: datetime) -> Plan:
    out = Plan(delete_pods=[p.name for p in live])
    if status.phase != "Suspended":
        out.events.append(Event("Normal", "Suspended", "suspend is true: pods deleted, the job is kept"))
    _transition(status, "Suspended", "Suspended", "runPolicy.suspend is true", now)
    return out


def _finished(job: GRPOJob, status: GRPOJobStatus, live: list[PodState], now: datetime) -> Plan:
    # Workers still running after the master succeeded (or any pod after a failure) are stopped.
    out = Plan(delete_pods=[p.name for p in live if p.phase not in TERMINAL])
    return _finished_requeue(job, status, out, now)


def _finished_requeue(job: GRPOJob, status: GRPOJobStatus, out: Plan, now: datetime) -> Plan:
    ttl = job.spec.run_policy.ttl_seconds_after_finished
    if ttl is None or status.completion_time is None:
        return out
    left = (status.completion_time + timedelta(seconds=ttl) - now).total_seconds()
    if left <= 0:
        out.delete_job = True
    else:
        out.requeue_after = left
    return out


def _transition(status: GRPOJobStatus, phase: str, reason: str, message: str, now: datetime) -> None:
    """Set the phase and its condition (the others become False), keeping transition times."""
    status.phase = phase  # type: ignore[assignment]
    for kind in PHASES:
        if kind == phase:
            set_condition(status.conditions, kind, "True", reason, message, now)
        else:
            set_condition(status.conditions, kind, "False", "", "", now)


def _replica_counts(pods: list[PodState]) -> dict[str, ReplicaCounts]:
    counts: dict[str, ReplicaCounts] = {}
    for pod in pods:
        role = "master" if pod.index == 0 else "worker"
        c = counts.setdefault(role, ReplicaCounts())
        if pod.phase == "Succeeded":
            c.succeeded += 1
        elif pod.phase == "Failed":
            c.failed += 1
        else:
            c.active += 1
    return counts
