"""The VLMService planner, case by case (pure: no API server, a fixed clock)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from vlmr1_core.api.grpojob import GRPOJob
from vlmr1_core.api.vlmservice import VLMService, VLMServiceStatus
from vlmr1_operator.autoscaler import State
from vlmr1_operator.builders.vlmservice import DIGEST_ANNOTATION, LABEL_SERVICE
from vlmr1_operator.service_lifecycle import (
    Autoscaling,
    Observed,
    ServicePlan,
    evaluation_due,
    job_checkpoint,
    plan,
)
from vlmr1_operator.settings import OperatorSettings
from vlmr1_operator.throughput import Load

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SETTINGS = OperatorSettings()
D1, D2, D4 = ("sha256:" + c * 64 for c in "124")
PINNED = {"uri": "pvc://runs/rec/checkpoint-1", "digest": D1}


def service(model: dict[str, Any] | None = None, status: VLMServiceStatus | None = None, **spec: Any) -> VLMService:
    body: dict[str, Any] = {
        "apiVersion": "vlmr1.io/v1alpha1",
        "kind": "VLMService",
        "metadata": {"name": "rec", "namespace": "ml", "uid": "u1", "generation": 2},
        "spec": {
            "model": model or PINNED,
            "engine": {"name": "transformers"},
            "resources": {"accelerator": "cpu", "devicesPerReplica": 0},
            **spec,
        },
    }
    if status is not None:
        body["status"] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    return VLMService.model_validate(body)


def checkpoint(step: int, digest: str, **metrics: float) -> dict[str, Any]:
    return {"uri": f"pvc://runs/rec/checkpoint-{step}", "step": step, "digest": digest, "metrics": metrics}


def job(*checkpoints: dict[str, Any], best: int | None = None, **checkpoint_spec: Any) -> GRPOJob:
    status: dict[str, Any] = {"phase": "Running", "checkpoints": list(checkpoints)}
    if best is not None:
        status["bestCheckpoint"] = next(c for c in checkpoints if c["step"] == best)
    return GRPOJob.model_validate({
        "apiVersion": "vlmr1.io/v1alpha1", "kind": "GRPOJob",
        "metadata": {"name": "train", "namespace": "ml"},
        "spec": {"model": {"uri": "hf://Qwen/Qwen2.5-VL-3B-Instruct"}, "datasets": [{"jsonl": "pvc://d/a.jsonl"}],
                 "checkpoint": checkpoint_spec},
        "status": status,
    })  # fmt: skip


def deployment(replicas: int = 0, ready: int = 0) -> dict[str, Any]:
    return {"metadata": {"name": "rec"}, "status": {"replicas": replicas, "readyReplicas": ready}}


def pod(digest: str, ready: bool = True, name: str = "") -> dict[str, Any]:
    return {
        "metadata": {"name": name or f"rec-{digest[7:10]}", "uid": name or digest, "labels": {LABEL_SERVICE: "rec"},
                     "annotations": {DIGEST_ANNOTATION: digest}},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }  # fmt: skip


def conditions(decided: ServicePlan) -> dict[str, tuple[str, str, str]]:
    return {c.type: (c.status, c.reason, c.message) for c in decided.status.conditions}


def reasons(decided: ServicePlan) -> list[str]:
    return [e.reason for e in decided.events]


def follow(which: str = "best") -> dict[str, Any]:
    return {"fromJob": {"name": "train", "checkpoint": which}}


# --- Resolving the model, and the phase that follows ------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    svc: VLMService
    observed: Observed
    phase: str
    resolved: str  # ModelResolved's status: True or False
    message: str  # in ModelResolved's message
    digest: str | None  # status.modelDigest
    events: list[str] = field(default_factory=list)
    created: bool = False  # the builders' children in the plan


CASES = [
    Case("pinned-first-reconcile", service(), Observed(), "Progressing", "True", f"serving {D1}", D1,
         ["Deploying"], created=True),
    Case("job-missing", service(follow()), Observed(), "Pending", "False", "GRPOJob ml/train does not exist", None,
         ["WaitingForModel"]),
    Case("job-unreadable", service(follow()), Observed(job_problem="GRPOJob ml/train cannot be read: bad"),
         "Pending", "False", "cannot be read: bad", None, ["WaitingForModel"]),
    Case("job-without-checkpoints", service(follow()), Observed(job=job()), "Pending", "False",
         "GRPOJob ml/train has no 'best' checkpoint yet", None, ["WaitingForModel"]),
    Case("best-marked-by-the-job", service(follow()),
         Observed(job=job(checkpoint(2, D2, reward=0.9), checkpoint(4, D4, reward=0.1), best=4)),
         "Progressing", "True", f"serving {D4}", D4, ["Deploying"], created=True),
    Case("best-by-the-jobs-metric-when-unmarked", service(follow()),
         Observed(job=job(checkpoint(2, D2, loss=0.1), checkpoint(4, D4, loss=0.3), bestMetric="loss",
                          greaterIsBetter=False)),
         "Progressing", "True", f"serving {D2}", D2, ["Deploying"], created=True),
    Case("best-without-the-metric-waits", service(follow()), Observed(job=job(checkpoint(2, D2))), "Pending",
         "False", "has no 'best' checkpoint yet", None, ["WaitingForModel"]),
    Case("latest", service(follow("latest")), Observed(job=job(checkpoint(4, D4), checkpoint(2, D2), best=2)),
         "Progressing", "True", f"serving {D4}", D4, ["Deploying"], created=True),
    Case("a-step-not-saved-yet", service(follow("6")), Observed(job=job(checkpoint(4, D4))), "Pending", "False",
         "has no '6' checkpoint yet", None, ["WaitingForModel"]),
    Case("a-step", service(follow("4")), Observed(job=job(checkpoint(2, D2), checkpoint(4, D4), best=2)),
         "Progressing", "True", f"serving {D4}", D4, ["Deploying"], created=True),
    Case("unresolved-while-old-replicas-serve",
         service(follow(), VLMServiceStatus(phase="Ready", model_digest=D1)),
         Observed(deployment=deployment(1, 1), pods=[pod(D1)]), "Ready", "False", "does not exist", D1,
         ["WaitingForModel"]),
    Case("ready", service(status=VLMServiceStatus(phase="Progressing", model_digest=D1)),
         Observed(deployment=deployment(1, 1), pods=[pod(D1)]), "Ready", "True", f"serving {D1}", D1, ["Ready"],
         created=True),
    Case("an-unready-pod-serves-nothing", service(status=VLMServiceStatus(model_digest=D1)),
         Observed(deployment=deployment(1, 0), pods=[pod(D1, ready=False)]), "Progressing", "True", "", D1,
         created=True),
    Case("a-new-digest-rolls-out", service({"uri": "pvc://runs/rec/checkpoint-2", "digest": D2},
                                           VLMServiceStatus(phase="Ready", model_digest=D1)),
         Observed(deployment=deployment(1, 1), pods=[pod(D1)]), "Progressing", "True", f"serving {D2}", D2,
         ["RollingOut"], created=True),
    Case("mid-rollout-two-digests", service({"uri": "pvc://runs/rec/checkpoint-2", "digest": D2},
                                            VLMServiceStatus(phase="Progressing", model_digest=D2)),
         Observed(deployment=deployment(2, 2), pods=[pod(D1), pod(D2)]), "Progressing", "True", "", D2,
         created=True),
    Case("fewer-ready-than-desired", service(status=VLMServiceStatus(model_digest=D1), replicas={"max": 3, "count": 2}),
         Observed(deployment=deployment(2, 1), pods=[pod(D1)]), "Progressing", "True", "", D1, created=True),
    Case("scaled-to-zero", service(status=VLMServiceStatus(model_digest=D1), replicas={"min": 0, "count": 0}),
         Observed(deployment=deployment()), "Progressing", "True", "", D1, created=True),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_planner(case: Case) -> None:
    decided = plan(case.svc, case.observed, NOW, SETTINGS)
    status = decided.status
    assert status.phase == case.phase
    resolved = conditions(decided)["ModelResolved"]
    assert resolved[0] == case.resolved and case.message in resolved[2], resolved
    assert status.model_digest == case.digest
    assert reasons(decided) == case.events
    assert [o["kind"] for o in decided.ensure] == (
        ["ConfigMap", "Deployment", "Service", "PodDisruptionBudget"] if case.created else []
    )
    ready = conditions(decided)["Ready"]
    assert ready[0] == ("True" if case.phase == "Ready" else "False")
    assert (status.observed_generation, status.endpoint, status.selector) == (
        2, "http://rec.ml.svc:8000/v1", "vlmr1.io/service-name=rec"
    )  # fmt: skip
    assert decided.scale_to is None and decided.requeue_after is None, "no autoscaling: only a change matters"


def test_case_ids_are_unique() -> None:
    assert len({c.id for c in CASES}) == len(CASES)


def test_served_digests_and_counts() -> None:
    svc = service({"uri": "pvc://runs/rec/checkpoint-2", "digest": D2}, replicas={"max": 3, "count": 3})
    pods = [pod(D1, name="a"), pod(D2, name="b"), pod(D2, name="c"), pod(D2, ready=False, name="d")]
    status = plan(svc, Observed(deployment=deployment(4, 3), pods=pods), NOW, SETTINGS).status
    assert [(s.digest, s.replicas) for s in status.served_digests] == [(D1, 1), (D2, 2)]
    assert (status.replicas, status.ready_replicas) == (4, 3)
    assert status.model == f"pvc://runs/rec/checkpoint-2@{D2[:19]}"


def test_the_deployment_carries_the_resolved_checkpoint() -> None:
    decided = plan(service(follow()), Observed(job=job(checkpoint(4, D4), best=4)), NOW, SETTINGS)
    deployment_ = next(o for o in decided.ensure if o["kind"] == "Deployment")
    assert deployment_["spec"]["template"]["metadata"]["annotations"][DIGEST_ANNOTATION] == D4
    config = next(o for o in decided.ensure if o["kind"] == "ConfigMap")
    assert "checkpoint-4" in config["data"]["vlmservice.yaml"] and "fromJob" not in config["data"]["vlmservice.yaml"]


def test_a_valid_spec_clears_an_old_invalid_state() -> None:
    invalid = VLMServiceStatus.model_validate({"phase": "Failed", "conditions": [
        {"type": "Invalid", "status": "True", "reason": "InvalidSpec", "message": "bad"},
        {"type": "Failed", "status": "True", "reason": "InvalidSpec", "message": "bad"}]})  # fmt: skip
    decided = plan(service(status=invalid), Observed(deployment=deployment(1, 1), pods=[pod(D1)]), NOW, SETTINGS)
    assert decided.status.phase == "Ready" and set(conditions(decided)) == {"ModelResolved", "Ready"}


def test_a_settled_service_plans_the_same_status_and_no_events() -> None:
    svc, observed = service(), Observed(deployment=deployment(1, 1), pods=[pod(D1)])
    first = plan(svc, observed, NOW, SETTINGS)
    again = plan(service(status=first.status), observed, NOW + timedelta(minutes=5), SETTINGS)
    assert again.status == first.status and again.events == []
    waiting = plan(service(follow()), Observed(), NOW, SETTINGS)
    still = plan(service(follow(), waiting.status), Observed(), NOW + timedelta(minutes=5), SETTINGS)
    assert still.status == waiting.status and still.events == [], "waiting for a checkpoint is said once"


def test_job_checkpoint_is_the_promote_rule() -> None:
    trained = job(checkpoint(2, D2, reward=0.5), checkpoint(4, D4, reward=0.5))
    best = job_checkpoint(trained, "best")
    assert best is not None and best.step == 4, "ties go to the newer checkpoint"
    assert job_checkpoint(job(checkpoint(2, D2)), "latest") is not None
    unreported = GRPOJob.model_validate({**trained.model_dump(by_alias=True, exclude_none=True), "status": None})
    assert job_checkpoint(unreported, "latest") is None


# --- Autoscaling -------------------------------------------------------------------------------

AUTOSCALED = {"replicas": {"min": 1, "max": 4}, "autoscaling": {"targetTokensPerSecondPerReplica": 100,
                                                                  "evaluationPeriodSeconds": 15}}  # fmt: skip


def autoscaled(count: int | None = None) -> VLMService:
    spec = {**AUTOSCALED, "replicas": {**AUTOSCALED["replicas"], **({"count": count} if count is not None else {})}}
    return service(status=VLMServiceStatus(model_digest=D1), **spec)


def test_a_due_evaluation_scales_on_the_measured_load() -> None:
    observed = Observed(deployment=deployment(1, 1), pods=[pod(D1)], load=Load(350.0, 0.0))
    decided = plan(autoscaled(), observed, NOW, SETTINGS)
    assert decided.scale_to == 4
    throughput = decided.status.throughput
    assert throughput is not None and (throughput.tokens_per_second, throughput.measured_at) == (350.0, NOW)
    assert decided.status.last_scale_time == NOW
    assert reasons(decided) == ["Ready", "Scaled"] and decided.events[-1].message.startswith("1 -> 4 replicas: ")
    assert decided.autoscaling is not None and decided.autoscaling.evaluated_at == NOW.timestamp()
    assert decided.requeue_after == 15, "due again at the next evaluation"


def test_a_steady_load_keeps_the_count() -> None:
    observed = Observed(deployment=deployment(2, 2), pods=[pod(D1, name="a"), pod(D1, name="b")], load=Load(200, 0))
    decided = plan(autoscaled(count=2), observed, NOW, SETTINGS)
    assert decided.scale_to is None and decided.status.last_scale_time is None and reasons(decided) == ["Ready"]
    assert decided.status.throughput is not None and decided.status.throughput.tokens_per_second_per_replica == 100


def test_between_evaluations_nothing_is_decided() -> None:
    memory = Autoscaling(State(), evaluated_at=(NOW - timedelta(seconds=5)).timestamp())
    assert not evaluation_due(autoscaled(), memory, NOW)
    observed = Observed(deployment=deployment(1, 1), pods=[pod(D1)], load=Load(350.0, 0.0))
    decided = plan(autoscaled(), observed, NOW, SETTINGS, memory)
    assert decided.scale_to is None and decided.autoscaling is None and decided.status.throughput is None
    assert decided.requeue_after == pytest.approx(10), "due when the period ends"


def test_a_due_evaluation_without_a_measurement_tries_a_period_later() -> None:
    memory = Autoscaling(State(), evaluated_at=(NOW - timedelta(seconds=60)).timestamp())
    assert evaluation_due(autoscaled(), memory, NOW) and evaluation_due(autoscaled(), None, NOW)
    decided = plan(autoscaled(), Observed(deployment=deployment(1, 1), pods=[pod(D1)]), NOW, SETTINGS, memory)
    assert decided.autoscaling is None and decided.requeue_after == 15


def test_no_deployment_no_autoscaling() -> None:
    decided = plan(autoscaled(), Observed(load=Load(350.0, 0.0)), NOW, SETTINGS)
    assert decided.scale_to is None and decided.requeue_after is None
    assert not evaluation_due(service(), None, NOW)
