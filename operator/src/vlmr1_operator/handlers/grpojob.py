"""kopf handlers for GRPOJobs: parse, plan (lifecycle.plan), apply, write status.

Event handlers only (no create/update handlers): kopf keeps no state annotations or
finalizers on our objects, and every watch event of a job or of one of its pods runs the
same level-triggered reconcile. What no event announces (a deadline or TTL coming due, the
trainer's progress, a retry after an API error) is the job's due time in resync.py, which
each reconcile sets. A per-job lock keeps concurrent triggers from interleaving.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import kopf

from vlmr1_core.api.grpojob import GRPOJob
from vlmr1_core.reward_config import KNOWN_REWARDS, reward_name_problem
from vlmr1_operator import k8s, progress
from vlmr1_operator.builders.common import LABEL_JOB, MANAGED_BY
from vlmr1_operator.handlers.base import Controller, owned_by
from vlmr1_operator.lifecycle import PodState, plan
from vlmr1_operator.settings import OperatorSettings

log = logging.getLogger(__name__)
GROUP, VERSION = "vlmr1.io", "v1alpha1"


class GRPOJobController(Controller):
    """Reconciles GRPOJobs; the handlers and the resync loop call `reconcile`."""

    KIND = "GRPOJob"
    RESOURCE = k8s.GRPOJOBS

    def _reconcile(self, body: dict[str, Any], now: datetime) -> float | None:
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        job = self._parse(body, now)
        observed = self.kube.list(k8s.PODS, namespace, {LABEL_JOB: name, "app.kubernetes.io/managed-by": MANAGED_BY})
        pods = [PodState.from_manifest(p) for p in observed if owned_by(p, body)]
        decided = plan(job, pods, now, self.settings)
        for obj in decided.ensure:
            self.kube.ensure(obj)
        for pod in decided.delete_pods:
            self.kube.delete(k8s.PODS, namespace, pod)
        status = decided.status
        master = next((p for p in pods if p.index == 0 and p.ip and not p.terminating), None)
        if status.get("phase") == "Running" and master is not None and master.ip:
            report = progress.scrape(master.ip, self.settings.trainer_metrics_port)
            if report is not None:
                best = job.spec.checkpoint
                status = progress.fold(status, report, now, best.best_metric, greater_is_better=best.greater_is_better)
        self.write_status(body, status)
        for event in decided.events:
            self.event(body, event.type, event.reason, event.message, now)
        self.observed_phase(namespace, name, status.get("phase", "Pending"))
        if decided.delete_job:
            log.info("deleting GRPOJob %s/%s: ttlSecondsAfterFinished passed", namespace, name)
            self.kube.delete(k8s.GRPOJOBS, namespace, name)
            return None
        return decided.requeue_after

    def observed_phase(self, namespace: str, name: str, phase: str) -> None:
        self.metrics.observe_phase(namespace, name, phase)

    def forget(self, namespace: str, name: str) -> None:
        super().forget(namespace, name)
        self.metrics.forget(namespace, name)

    def tracked(self) -> set[tuple[str, str]]:
        return super().tracked() | self.metrics.tracked()

    def _parse(self, body: dict[str, Any], now: datetime) -> GRPOJob:
        def validate(data: dict[str, Any]) -> tuple[GRPOJob, str]:
            job = GRPOJob.model_validate(data)
            return job, _unknown_rewards(job, self.settings)

        return self.parse(body, now, validate)


def _unknown_rewards(job: GRPOJob, settings: OperatorSettings) -> str:
    """Built-in reward names only: references and remote rewards are the trainer's to check (the
    operator holds no reward code); the plan says so in a RewardsNotChecked event."""
    known = KNOWN_REWARDS | set(settings.extra_reward_names)
    for i, reward in enumerate(job.spec.rewards):
        problem = reward_name_problem(reward.name, known) if reward.kind == "builtin" else None
        if problem:
            # The same check and words as `vlmr1 validate` and the trainer, plus the operator's own fix.
            return (
                f"spec.rewards[{i}].name: {problem}; a custom trainer image's rewards are added with the "
                "operator's extraRewardNames setting"
            )
    return ""


def register(registry: kopf.OperatorRegistry, controller: GRPOJobController) -> None:
    """The handlers: every event of a job, or of a pod the operator made for one, reconciles it."""

    @kopf.on.event(GROUP, VERSION, "grpojobs", registry=registry)
    def grpojob_event(**kwargs: Any) -> None:
        event, meta = kwargs["event"], kwargs["body"]["metadata"]
        if event.get("type") == "DELETED":
            controller.forget(meta["namespace"], meta["name"])
            return
        controller.reconcile(meta["namespace"], meta["name"])

    @kopf.on.event(
        "", "v1", "pods", labels={"app.kubernetes.io/managed-by": MANAGED_BY, LABEL_JOB: kopf.PRESENT},
        registry=registry,
    )  # fmt: skip
    def pod_event(**kwargs: Any) -> None:
        meta = kwargs["body"].get("metadata", {})
        controller.reconcile(meta.get("namespace", ""), meta.get("labels", {}).get(LABEL_JOB, ""))
