"""The VLMService planner, as a pure function: (service, what was observed, now) -> a plan.

Level-triggered, like the GRPOJob's lifecycle.py. First the model is resolved: a pinned
`model.uri` and `model.digest` as they are, a `model.fromJob` reference to that GRPOJob's
best, latest or numbered checkpoint in its status, chosen by
`vlmr1_core.checkpoints.select_checkpoint` (the rule `vlmr1 promote` uses; the checkpoints a
job's status lists were verified by the trainer when saved). While there is none the service
is Pending with `ModelResolved: False` and why, and no child is touched (existing replicas keep
serving what they serve). A resolved model gives the builders' children; the digest is in the
pod template, so a new one rolls the Deployment (maxUnavailable 0).

Phase: Pending while no model is resolved and no Deployment exists; Ready once every desired
replica is ready and serves the digest asked for, and no other digest is served; else
Progressing (rolling out or scaling). `status.servedDigests` counts the ready replicas serving
each digest (two during a rollout).

Autoscaling: once per evaluation period the handler measures the load (I/O, throughput.py)
and passes it in; `autoscaler.decide` turns it into a replica count for the scale
subresource. The plan says when the next evaluation is due.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from vlmr1_core.api.grpojob import CheckpointStatus, GRPOJob
from vlmr1_core.api.vlmservice import ServedDigest, Throughput, VLMService, VLMServiceStatus
from vlmr1_core.checkpoints import select_checkpoint, selector
from vlmr1_operator.autoscaler import Observation, ScalingPolicy, State, decide
from vlmr1_operator.builders import build_vlmservice
from vlmr1_operator.builders.common import Manifest
from vlmr1_operator.builders.vlmservice import DIGEST_ANNOTATION, LABEL_SERVICE, endpoint
from vlmr1_operator.conditions import Event, get_condition, set_condition
from vlmr1_operator.settings import OperatorSettings
from vlmr1_operator.throughput import Load

#: Conditions Controller.parse sets on an invalid spec; a valid spec clears them (unlike a
#: finished job, a service recovers).
INVALID_TYPES = ("Invalid", "Failed")


@dataclass(frozen=True)
class Autoscaling:
    """What the autoscaler remembers between reconciles of one service. Kept in memory: a
    restarted operator starts afresh, which `autoscaler.State` takes as no change at once."""

    state: State = field(default_factory=State)
    evaluated_at: float | None = None
    """Wall-clock seconds of the last evaluation (None: none yet)."""


@dataclass(frozen=True)
class Observed:
    """What the handler read for one reconcile."""

    deployment: Manifest | None = None
    """The service's Deployment, if it exists."""

    pods: Sequence[Manifest] = ()
    """The service's pods (by label: they belong to the Deployment's ReplicaSets)."""

    job: GRPOJob | None = None
    """The GRPOJob `model.fromJob` names; None when there is none (or it cannot be read)."""

    job_problem: str = ""
    """Why the job cannot be read, when it exists but does not parse."""

    load: Load | None = None
    """The load measured for this reconcile (only when an evaluation was due)."""


@dataclass
class ServicePlan:
    """What one reconcile does: ensure children, scale, write status, emit events."""

    status: VLMServiceStatus
    ensure: list[Manifest] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    scale_to: int | None = None
    """Replicas to set through the scale subresource (None: leave them)."""
    autoscaling: Autoscaling | None = None
    """The autoscaler's memory after this reconcile (None: unchanged)."""
    requeue_after: float | None = None
    """Seconds until the service is due again though nothing changes: its next evaluation."""


def plan(
    svc: VLMService,
    observed: Observed,
    now: datetime,
    settings: OperatorSettings,
    autoscaling: Autoscaling | None = None,
) -> ServicePlan:
    """What to do about `svc`, given what was observed, at `now`."""
    before = svc.status or VLMServiceStatus()
    status = before.model_copy(deep=True)
    status.conditions = [c for c in status.conditions if c.type not in INVALID_TYPES]
    decided = ServicePlan(status=status)
    resolved, why = resolve(svc, observed.job, observed.job_problem)
    if resolved is None:
        set_condition(status.conditions, "ModelResolved", "False", "CheckpointNotFound", why, now, report_false=True)
    else:
        model = resolved.spec.model
        set_condition(status.conditions, "ModelResolved", "True", "Resolved", f"serving {model.digest}", now)
        decided.ensure = build_vlmservice(resolved, settings)
    pods = [p for p in observed.pods if is_ready(p)]
    served = Counter((p["metadata"].get("annotations") or {}).get(DIGEST_ANNOTATION, "") for p in pods)
    target = resolved.spec.model.digest if resolved is not None else before.model_digest
    replicas = svc.spec.replicas
    desired = replicas.count if replicas.count is not None else replicas.min
    if resolved is None and observed.deployment is None:
        status.phase = "Pending"
    elif served[target or ""] >= max(desired, 1) and set(served) == {target}:
        status.phase = "Ready"  # every desired replica serves the digest asked for, and nothing else does
    else:
        status.phase = "Progressing"
    deployment = (observed.deployment or {}).get("status") or {}
    ready = int(deployment.get("readyReplicas") or 0)
    set_condition(status.conditions, "Ready", "True" if status.phase == "Ready" else "False",
                  "AllReplicasReady" if status.phase == "Ready" else "NotReady",
                  f"{ready}/{desired} replica(s) ready", now, report_false=True)  # fmt: skip
    status.observed_generation = svc.metadata.generation
    status.replicas = int(deployment.get("replicas") or 0)
    status.ready_replicas = ready
    status.selector = f"{LABEL_SERVICE}={svc.metadata.name}"
    status.endpoint = endpoint(svc)
    status.served_digests = [ServedDigest(digest=d, replicas=n) for d, n in sorted(served.items()) if d]
    if target:
        status.model_digest = target
        if resolved is not None:
            status.model = f"{resolved.spec.model.uri}@{target[:19]}"
    decided.events = _events(before, status, resolved, why)
    if svc.spec.autoscaling is not None and observed.deployment is not None:
        _autoscale(svc, observed, len(pods), now, autoscaling or Autoscaling(), decided)
    return decided


def resolve(svc: VLMService, job: GRPOJob | None, job_problem: str = "") -> tuple[VLMService | None, str]:
    """The service with model.uri and digest set (a fromJob reference resolved), or why not."""
    ref = svc.spec.model.from_job
    if ref is None:
        return svc, ""
    namespace = svc.metadata.namespace or "default"
    if job is None:
        return None, job_problem or f"GRPOJob {namespace}/{ref.name} does not exist"
    checkpoint = job_checkpoint(job, ref.checkpoint)
    if checkpoint is None:
        return None, f"GRPOJob {namespace}/{ref.name} has no {ref.checkpoint!r} checkpoint yet"
    model = svc.spec.model.model_copy(update={"from_job": None, "uri": checkpoint.uri, "digest": checkpoint.digest})
    return svc.model_copy(update={"spec": svc.spec.model_copy(update={"model": model})}), ""


def job_checkpoint(job: GRPOJob, which: str) -> CheckpointStatus | None:
    """The checkpoint of `job`'s status that `which` (best, latest or a step) names, by the rule
    `vlmr1 promote` uses: best is the one the status marks, else the best by the job's metric."""
    if job.status is None:
        return None
    checkpoints, best = job.status.checkpoints, job.status.best_checkpoint
    index = select_checkpoint(
        [(c.step, c.metrics) for c in checkpoints],
        selector(which),
        best_metric=job.spec.checkpoint.best_metric,
        greater_is_better=job.spec.checkpoint.greater_is_better,
        marked_best=best.step if best is not None else None,
    )
    return checkpoints[index] if index is not None else None


def is_ready(pod: Manifest) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def evaluation_due(svc: VLMService, autoscaling: Autoscaling | None, now: datetime) -> bool:
    """Whether the autoscaler should measure and decide now (once per evaluation period)."""
    spec = svc.spec.autoscaling
    if spec is None:
        return False
    last = autoscaling.evaluated_at if autoscaling is not None else None
    return last is None or now.timestamp() - last >= spec.evaluation_period_seconds


def _events(before: VLMServiceStatus, after: VLMServiceStatus, resolved: VLMService | None, why: str) -> list[Event]:
    """Events for transitions only, so a reconcile that changes nothing posts none."""
    events = []
    if resolved is None:
        was = get_condition(before.conditions, "ModelResolved")
        if was is None or (was.status, was.message) != ("False", why):
            events.append(Event("Normal", "WaitingForModel", why))
    elif after.model_digest != before.model_digest:
        model = resolved.spec.model
        if before.model_digest:
            events.append(Event("Normal", "RollingOut", f"rolling out {model.uri} ({model.digest}), replacing "
                                f"{before.model_digest}"))  # fmt: skip
        else:
            events.append(Event("Normal", "Deploying", f"serving {model.uri} ({model.digest})"))
    if after.phase == "Ready" and before.phase != "Ready":
        events.append(Event("Normal", "Ready", f"{after.ready_replicas} replica(s) serve {after.model_digest}"))
    return events


def _autoscale(
    svc: VLMService, observed: Observed, ready: int, now: datetime, memory: Autoscaling, decided: ServicePlan
) -> None:
    """Decide on the measured load when an evaluation is due; say when the next one is."""
    spec = svc.spec.autoscaling
    assert spec is not None
    t, period = now.timestamp(), spec.evaluation_period_seconds
    if observed.load is not None and evaluation_due(svc, memory, now):
        load, stamp = observed.load, now.replace(microsecond=0)
        replicas = svc.spec.replicas
        current = replicas.count if replicas.count is not None else replicas.min
        decided.status.throughput = Throughput(
            tokens_per_second=round(load.tokens_per_second, 3),
            tokens_per_second_per_replica=round(load.tokens_per_second / max(ready, 1), 3),
            waiting_requests=load.waiting_requests,
            measured_at=stamp,
        )
        policy = ScalingPolicy.from_spec(spec, replicas)
        observation = Observation(t, current, load.tokens_per_second, load.waiting_requests, ready_replicas=ready)
        decision = decide(policy, memory.state, observation)
        memory = decided.autoscaling = Autoscaling(decision.state, t)
        if decision.replicas != current:
            decided.scale_to = decision.replicas
            decided.status.last_scale_time = stamp
            message = f"{current} -> {decision.replicas} replicas: {decision.reason}"
            decided.events.append(Event("Normal", "Scaled", message))
    # Due again when the next period starts; a whole period on when this one measured nothing.
    next_at = None if memory.evaluated_at is None else memory.evaluated_at + period
    decided.requeue_after = next_at - t if next_at is not None and next_at > t else float(period)
