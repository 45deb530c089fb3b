"""kopf handlers for VLMServices: read, plan (service_lifecycle.plan), apply, write status.

Every watch event of a service, its Deployment or its pods reconciles it. A `model.fromJob`
service follows its GRPOJob: an event of that job (a new best checkpoint in its status) makes
the service due at once in resync.py. An autoscaled service is due again at its next
evaluation period, when the handler measures the load (throughput.py) for the planner.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import kopf
from pydantic import ValidationError

from vlmr1_core.api.grpojob import GRPOJob
from vlmr1_core.api.vlmservice import VLMService
from vlmr1_operator import k8s
from vlmr1_operator.builders.vlmservice import LABEL_SERVICE
from vlmr1_operator.handlers.base import Controller, without_server_fields
from vlmr1_operator.service_lifecycle import Autoscaling, Observed, evaluation_due, is_ready, plan
from vlmr1_operator.throughput import Load, RateTracker, prometheus_load, scrape_pod

log = logging.getLogger(__name__)
GROUP, VERSION = "vlmr1.io", "v1alpha1"


class VLMServiceController(Controller):
    """Reconciles VLMServices; the handlers and the resync loop call `reconcile`."""

    KIND = "VLMService"
    RESOURCE = k8s.VLMSERVICES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Per service, in memory, pruned when it is deleted: token-counter readings, the
        # autoscaler's memory, and the GRPOJob a fromJob service follows.
        self._rates: dict[tuple[str, str], RateTracker] = {}
        self._autoscaling: dict[tuple[str, str], Autoscaling] = {}
        self._sources: dict[tuple[str, str], str] = {}

    def _reconcile(self, body: dict[str, Any], now: datetime) -> float | None:
        svc = self.parse(body, now, lambda data: (VLMService.model_validate(data), ""))
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        decided = plan(svc, self._observe(svc, key, now), now, self.settings, self._autoscaling.get(key))
        for obj in decided.ensure:
            self.kube.ensure(obj)
        if decided.scale_to is not None:
            self.kube.scale(k8s.VLMSERVICES, key[0], key[1], decided.scale_to)
        if decided.autoscaling is not None:
            self._autoscaling[key] = decided.autoscaling
        self.write_status(body, decided.status.model_dump(mode="json", by_alias=True, exclude_none=True))
        for event in decided.events:
            self.event(body, event.type, event.reason, event.message, now)
        return decided.requeue_after

    def _observe(self, svc: VLMService, key: tuple[str, str], now: datetime) -> Observed:
        namespace, name = key
        job, problem = self._source_job(svc, key)
        deployment = self.kube.get(k8s.DEPLOYMENTS, namespace, name)
        pods = self.kube.list(k8s.PODS, namespace, {LABEL_SERVICE: name})
        load = None
        if deployment is not None and evaluation_due(svc, self._autoscaling.get(key), now):
            load = self._measure(key, svc, [p for p in pods if is_ready(p)], now.timestamp())
        return Observed(deployment, pods, job, problem, load)

    def _source_job(self, svc: VLMService, key: tuple[str, str]) -> tuple[GRPOJob | None, str]:
        """model.fromJob's GRPOJob (remembered, so its events wake the service), or why it cannot be read."""
        ref = svc.spec.model.from_job
        if ref is None:
            self._sources.pop(key, None)
            return None, ""
        self._sources[key] = ref.name
        body = self.kube.get(k8s.GRPOJOBS, key[0], ref.name)
        if body is None:
            return None, ""
        try:
            return GRPOJob.model_validate(without_server_fields(body)), ""
        except ValidationError as exc:
            return None, f"GRPOJob {key[0]}/{ref.name} cannot be read: {exc.errors()[0]['msg']}"

    def _measure(self, key: tuple[str, str], svc: VLMService, ready: list[dict[str, Any]], t: float) -> Load | None:
        assert svc.spec.autoscaling is not None
        prometheus = svc.spec.autoscaling.metrics_source.prometheus
        if prometheus is not None:
            return prometheus_load(
                prometheus.url, key[0], key[1], self.settings.prometheus_tokens_query,
                self.settings.prometheus_waiting_query,
            )  # fmt: skip
        samples = {}
        for pod in ready:
            ip = (pod.get("status") or {}).get("podIP")
            sample = scrape_pod(ip, self.settings.serving_metrics_port) if ip else None
            if sample is not None:
                samples[pod["metadata"]["uid"]] = sample
        return self._rates.setdefault(key, RateTracker()).update(t, samples)

    def followers(self, namespace: str, job: str) -> list[str]:
        """The services (in `namespace`) whose model.fromJob names `job`."""
        return sorted(name for (ns, name), source in list(self._sources.items()) if ns == namespace and source == job)

    def wake_followers(self, namespace: str, job: str) -> None:
        """Make every service following `job` due now (the resync loop reconciles it)."""
        for name in self.followers(namespace, job):
            self.queue.schedule(self.key(namespace, name), 0, sooner_only=True)

    def forget(self, namespace: str, name: str) -> None:
        super().forget(namespace, name)
        for state in (self._rates, self._autoscaling, self._sources):
            state.pop((namespace, name), None)

    def tracked(self) -> set[tuple[str, str]]:
        return super().tracked() | set(self._rates) | set(self._autoscaling) | set(self._sources)


def register(registry: kopf.OperatorRegistry, controller: VLMServiceController) -> None:
    """Every event of a service, its Deployment or its pods reconciles it; an event of a GRPOJob
    makes the services that follow it due."""

    @kopf.on.event(GROUP, VERSION, "vlmservices", registry=registry)
    def vlmservice_event(**kwargs: Any) -> None:
        event, meta = kwargs["event"], kwargs["body"]["metadata"]
        if event.get("type") == "DELETED":
            controller.forget(meta["namespace"], meta["name"])
            return
        controller.reconcile(meta["namespace"], meta["name"])

    @kopf.on.event(GROUP, VERSION, "grpojobs", registry=registry)
    def source_job_event(**kwargs: Any) -> None:
        meta = kwargs["body"]["metadata"]
        controller.wake_followers(meta["namespace"], meta["name"])

    @kopf.on.event("apps", "v1", "deployments", labels={LABEL_SERVICE: kopf.PRESENT}, registry=registry)
    @kopf.on.event("", "v1", "pods", labels={LABEL_SERVICE: kopf.PRESENT}, registry=registry)
    def child_event(**kwargs: Any) -> None:
        # The label names the service (pods belong to the Deployment's ReplicaSets, not to it); the
        # reconcile reads the service itself, and does nothing if there is none.
        meta = kwargs["body"]["metadata"]
        controller.reconcile(meta["namespace"], meta["labels"][LABEL_SERVICE])
