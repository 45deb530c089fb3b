"""kopf handlers for VLMServices: resolve the model, apply the builders, report what serves.

A `model.fromJob` reference resolves to that GRPOJob's best, latest or named checkpoint
from its status (checkpoints there were verified by the trainer when saved); the
Deployment then carries that digest. While a job has no such checkpoint the service
stays Pending (existing replicas keep serving what they serve). Status reports the
endpoint, the digest asked for, and how many ready replicas serve each digest (two
during a rollout).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime
from typing import Any

import kopf

from vlmr1_core.api.common import Condition
from vlmr1_core.api.vlmservice import VLMService
from vlmr1_operator import k8s
from vlmr1_operator.autoscaler import Observation, ScalingPolicy, State, decide
from vlmr1_operator.builders import build_vlmservice
from vlmr1_operator.builders.vlmservice import DIGEST_ANNOTATION, LABEL_SERVICE, endpoint
from vlmr1_operator.conditions import set_condition
from vlmr1_operator.handlers.base import Controller, owned_by
from vlmr1_operator.throughput import Load, RateTracker, prometheus_load, scrape_pod

log = logging.getLogger(__name__)
GROUP, VERSION = "vlmr1.io", "v1alpha1"


#: Conditions Controller.parse sets on an invalid spec.
INVALID_TYPES = ("Invalid", "Failed")


class VLMServiceController(Controller):
    KIND = "VLMService"
    RESOURCE = k8s.VLMSERVICES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Per service: token-counter readings and the autoscaler's window of recommendations.
        # Kept in memory: a restarted operator starts a fresh window (the autoscaler then
        # treats the past as the current count, so a restart changes nothing at once).
        self._rates: dict[tuple[str, str], RateTracker] = {}
        self._scaling: dict[tuple[str, str], tuple[State, float]] = {}

    def _reconcile(self, body: dict[str, Any], now: datetime) -> None:
        svc = self.parse(body, now, lambda data: (VLMService.model_validate(data), ""))
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        status = dict(body.get("status") or {})
        # A valid spec ends an earlier Invalid/Failed state: unlike a finished job, a service recovers.
        conditions = [
            Condition.model_validate(c) for c in status.get("conditions") or [] if c.get("type") not in INVALID_TYPES
        ]
        resolved, why = self._resolve(svc)
        if resolved is None:
            set_condition(conditions, "ModelResolved", "False", "CheckpointNotFound", why, now, report_false=True)
        else:
            set_condition(conditions, "ModelResolved", "True", "Resolved", f"serving {resolved.spec.model.digest}", now)
            for obj in build_vlmservice(resolved, self.settings):
                self.kube.ensure(obj)
        deployment = self.kube.get(k8s.DEPLOYMENTS, namespace, name) or {}
        replicas = int((deployment.get("status") or {}).get("replicas") or 0)
        ready = int((deployment.get("status") or {}).get("readyReplicas") or 0)
        pods = [p for p in self.kube.list(k8s.PODS, namespace, {LABEL_SERVICE: name}) if _ready(p)]
        served: dict[str, int] = {}
        for pod in pods:
            digest = (pod["metadata"].get("annotations") or {}).get(DIGEST_ANNOTATION, "")
            served[digest] = served.get(digest, 0) + 1
        target = resolved.spec.model.digest if resolved is not None else status.get("modelDigest")
        desired = svc.spec.replicas.count if svc.spec.replicas.count is not None else svc.spec.replicas.min
        if resolved is None and not deployment:
            phase = "Pending"
        elif served.get(target or "", 0) >= max(desired, 1) and set(served) == {target}:
            phase = "Ready"  # every desired replica serves the digest asked for, and nothing else does
        else:
            phase = "Progressing"
        set_condition(conditions, "Ready", "True" if phase == "Ready" else "False",
                      "AllReplicasReady" if phase == "Ready" else "NotReady",
                      f"{ready}/{desired} replica(s) ready", now, report_false=True)  # fmt: skip
        status.update(
            phase=phase,
            observedGeneration=body["metadata"].get("generation"),
            replicas=replicas,
            readyReplicas=ready,
            selector=f"{LABEL_SERVICE}={name}",
            endpoint=endpoint(svc),
            conditions=[c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in conditions],
            servedDigests=[{"digest": d, "replicas": n} for d, n in sorted(served.items()) if d],
        )
        if target:
            uri = resolved.spec.model.uri if resolved is not None else ""
            status.update(modelDigest=target, model=f"{uri}@{target[:19]}" if uri else status.get("model"))
        if svc.spec.autoscaling is not None and deployment:
            # The ready pods measured are the replicas that carry the load.
            self._autoscale(body, svc, pods, len(pods), status, now)
        self.write_status(body, {k: v for k, v in status.items() if v is not None})

    def _autoscale(
        self, body: dict[str, Any], svc: VLMService, pods: list[dict[str, Any]], ready: int,
        status: dict[str, Any], now: datetime,
    ) -> None:  # fmt: skip
        """Measure the load once per evaluation period and set replicas.count when the
        autoscaler's decision differs (through the scale subresource, as kubectl scale)."""
        assert svc.spec.autoscaling is not None
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        state, last = self._scaling.get(key, (State(), 0.0))
        t = now.timestamp()
        if t - last < svc.spec.autoscaling.evaluation_period_seconds:
            return
        load = self._measure(key, svc, pods, t)
        if load is None:
            return
        current = svc.spec.replicas.count if svc.spec.replicas.count is not None else svc.spec.replicas.min
        status["throughput"] = {
            "tokensPerSecond": round(load.tokens_per_second, 3),
            "tokensPerSecondPerReplica": round(load.tokens_per_second / max(ready, 1), 3),
            "waitingRequests": load.waiting_requests,
            "measuredAt": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
        policy = ScalingPolicy.from_spec(svc.spec.autoscaling, svc.spec.replicas)
        observation = Observation(t, current, load.tokens_per_second, load.waiting_requests, ready_replicas=ready)
        decision = decide(policy, state, observation)
        self._scaling[key] = (decision.state, t)
        if decision.replicas != current:
            self.kube.scale(k8s.VLMSERVICES, key[0], key[1], decision.replicas)
            status["lastScaleTime"] = status["throughput"]["measuredAt"]
            message = f"{current} -> {decision.replicas} replicas: {decision.reason}"
            self.event(body, "Normal", "Scaled", message, now)

    def _measure(self, key: tuple[str, str], svc: VLMService, pods: list[dict[str, Any]], t: float) -> Load | None:
        assert svc.spec.autoscaling is not None
        prometheus = svc.spec.autoscaling.metrics_source.prometheus
        if prometheus is not None:
            return prometheus_load(
                prometheus.url, key[0], key[1], self.settings.prometheus_tokens_query,
                self.settings.prometheus_waiting_query,
            )  # fmt: skip
        samples = {}
        for pod in pods:
            ip = (pod.get("status") or {}).get("podIP")
            sample = scrape_pod(ip, self.settings.serving_metrics_port) if ip else None
            if sample is not None:
                samples[pod["metadata"]["uid"]] = sample
        return self._rates.setdefault(key, RateTracker()).update(t, samples)

    def _resolve(self, svc: VLMService) -> tuple[VLMService | None, str]:
        """The service with model.uri and digest set (a job reference resolved), or why not."""
        ref = svc.spec.model.from_job
        if ref is None:
            return svc, ""
        namespace = svc.metadata.namespace or "default"
        job = self.kube.get(k8s.GRPOJOBS, namespace, ref.name)
        if job is None:
            return None, f"GRPOJob {namespace}/{ref.name} does not exist"
        checkpoint = select_checkpoint((job.get("status") or {}).get("checkpoints") or [], ref.checkpoint)
        if checkpoint is None:
            return None, f"GRPOJob {namespace}/{ref.name} has no {ref.checkpoint!r} checkpoint yet"
        model = svc.spec.model.model_copy(
            update={"from_job": None, "uri": checkpoint["uri"], "digest": checkpoint["digest"]}
        )
        return svc.model_copy(update={"spec": svc.spec.model_copy(update={"model": model})}), ""


def select_checkpoint(checkpoints: list[dict[str, Any]], which: str) -> dict[str, Any] | None:
    """best (marked by the operator), latest (highest step), or a step number."""
    if not checkpoints:
        return None
    if which == "best":
        return next((c for c in checkpoints if c.get("best")), None)
    if which == "latest":
        return max(checkpoints, key=lambda c: int(c["step"]))
    return next((c for c in checkpoints if str(c["step"]) == which), None)


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def register(registry: kopf.OperatorRegistry, controller: VLMServiceController) -> None:
    """Every event of a service, its Deployment or its pods reconciles it (the resync loop
    catches a job gaining the checkpoint a service waits for)."""

    @kopf.on.event(GROUP, VERSION, "vlmservices", registry=registry)
    def vlmservice_event(**kwargs: Any) -> None:
        body = kwargs["body"]
        if kwargs["event"].get("type") != "DELETED":
            controller.reconcile(body["metadata"]["namespace"], body["metadata"]["name"])

    @kopf.on.event("apps", "v1", "deployments", labels={LABEL_SERVICE: kopf.PRESENT}, registry=registry)
    @kopf.on.event("", "v1", "pods", labels={LABEL_SERVICE: kopf.PRESENT}, registry=registry)
    def child_event(**kwargs: Any) -> None:
        meta = kwargs["body"].get("metadata", {})
        service = controller.kube.get(k8s.VLMSERVICES, meta.get("namespace", ""), meta["labels"][LABEL_SERVICE])
        # Pods belong to the Deployment's ReplicaSet, not to the service: match by label for them.
        if service is not None and (owned_by(kwargs["body"], service) or kwargs["body"].get("kind") == "Pod"):
            # An invalid service is reported on the service itself, not from its Deployment's events.
            with contextlib.suppress(kopf.PermanentError):
                controller.reconcile(meta["namespace"], service["metadata"]["name"])
