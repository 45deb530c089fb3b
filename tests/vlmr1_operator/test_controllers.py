"""The controllers on an in-memory API: read, plan, apply, and write status only when it changed.

(The Argo CD health checks judge statuses from the same planners: tests/chart/test_argocd_health.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from vlmr1_core.api.vlmservice import VLMServiceStatus
from vlmr1_operator.builders.vlmservice import DIGEST_ANNOTATION, LABEL_SERVICE
from vlmr1_operator.handlers.grpojob import GRPOJobController
from vlmr1_operator.handlers.vlmservice import VLMServiceController
from vlmr1_operator.metrics import OperatorMetrics
from vlmr1_operator.settings import OperatorSettings
from vlmr1_operator.throughput import Load

from .memorykube import MemoryKube

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SETTINGS = OperatorSettings()
D1, D2 = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def vlmservice(generation: int = 1, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "vlmr1.io/v1alpha1", "kind": "VLMService",
        "metadata": {"name": "rec", "namespace": "ml", "uid": "u-svc", "generation": generation},
        "spec": {"model": {"fromJob": {"name": "rec"}}, "replicas": {"min": 1, "max": 4},
                 "resources": {"accelerator": "cpu", "devicesPerReplica": 0}, "engine": {"name": "transformers"},
                 **spec},
    }  # fmt: skip


class World:
    """A VLMService controller, its API, and the kubelet and Deployment controller played by hand."""

    def __init__(self) -> None:
        self.kube = MemoryKube()
        self.controller = VLMServiceController(self.kube, SETTINGS, OperatorMetrics())  # type: ignore[arg-type]
        self.kube.put(vlmservice())

    def reconcile(self, now: datetime = NOW) -> dict[str, Any]:
        """Reconcile; the status, validated by the model."""
        self.controller.reconcile("ml", "rec", now)
        status: dict[str, Any] = self.service["status"]
        VLMServiceStatus.model_validate(status)
        return status

    @property
    def service(self) -> dict[str, Any]:
        return self.kube.live("vlmservices", "ml", "rec")

    def checkpoint(self, digest: str, step: int = 10) -> None:
        """The job's status gains a checkpoint, marked best (as progress.fold writes it)."""
        checkpoint = {"uri": f"pvc://runs/rec/checkpoint-{step}", "step": step, "digest": digest, "best": True}
        self.kube.put({
            "apiVersion": "vlmr1.io/v1alpha1", "kind": "GRPOJob",
            "metadata": {"name": "rec", "namespace": "ml", "generation": 1},
            "spec": {"model": {"uri": "hf://Qwen/Qwen2.5-VL-3B-Instruct"}, "datasets": [{"jsonl": "pvc://d/a.jsonl"}]},
            "status": {"phase": "Running", "checkpoints": [checkpoint], "bestCheckpoint": checkpoint},
        })  # fmt: skip

    def serving(self, *digests: str) -> None:
        """Ready pods serving these digests, and the Deployment's status counting them."""
        for key in [k for k in self.kube.objects if k[0] == "pods"]:
            del self.kube.objects[key]
        for i, digest in enumerate(digests):
            self.kube.put({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"rec-{i}", "namespace": "ml", "uid": f"pod-{i}", "labels": {LABEL_SERVICE: "rec"},
                             "annotations": {DIGEST_ANNOTATION: digest}},
                "status": {"conditions": [{"type": "Ready", "status": "True"}], "podIP": "127.0.0.1"},
            })  # fmt: skip
        self.kube.live("deployments", "ml", "rec")["status"] = {"replicas": len(digests), "readyReplicas": len(digests)}

    def template_digest(self) -> str:
        deployment = self.kube.live("deployments", "ml", "rec")
        return str(deployment["spec"]["template"]["metadata"]["annotations"][DIGEST_ANNOTATION])

    def events(self) -> list[str]:
        reasons = [reason for _, reason, _ in self.kube.events]
        self.kube.events.clear()
        return reasons


def true_conditions(status: dict[str, Any]) -> set[str]:
    return {c["type"] for c in status["conditions"] if c["status"] == "True"}


def test_a_service_follows_its_job_from_waiting_to_serving_to_rolling() -> None:
    world = World()
    status = world.reconcile()
    assert status["phase"] == "Pending" and "GRPOJob ml/rec does not exist" in status["conditions"][0]["message"]
    assert ("deployments", "ml", "rec") not in world.kube.objects and world.events() == ["WaitingForModel"]

    world.checkpoint(D1)
    status = world.reconcile()
    assert (status["phase"], status["modelDigest"], world.template_digest()) == ("Progressing", D1, D1)
    assert status["model"] == f"pvc://runs/rec/checkpoint-10@{D1[:19]}" and world.events() == ["Deploying"]

    world.serving(D1)
    status = world.reconcile()
    assert status["phase"] == "Ready" and status["servedDigests"] == [{"digest": D1, "replicas": 1}]
    assert true_conditions(status) == {"ModelResolved", "Ready"} and world.events() == ["Ready"]

    world.checkpoint(D2, step=20)  # a better checkpoint: the Deployment rolls to it
    status = world.reconcile()
    assert (status["phase"], status["modelDigest"], world.template_digest()) == ("Progressing", D2, D2)
    assert status["servedDigests"] == [{"digest": D1, "replicas": 1}] and world.events() == ["RollingOut"]
    world.serving(D1, D2)
    assert world.reconcile()["phase"] == "Progressing", "the old digest is still served"
    world.serving(D2)
    assert world.reconcile()["phase"] == "Ready"


def test_status_is_written_only_when_it_changed() -> None:
    world = World()
    world.checkpoint(D1)
    world.reconcile()
    world.serving(D1)
    world.reconcile()
    assert world.events() == ["Deploying", "Ready"]
    writes, ensures = world.kube.calls["patch_status"], world.kube.calls["ensure"]
    world.reconcile(NOW + timedelta(minutes=5))
    assert world.kube.calls["patch_status"] == writes and world.events() == []
    assert world.kube.calls["ensure"] == ensures + 4, "children are compared (k8s.ensure writes only a difference)"


def test_an_invalid_spec_fails_and_a_fixed_one_recovers() -> None:
    world = World()
    world.checkpoint(D1)
    world.reconcile()
    world.serving(D1)
    assert world.reconcile()["phase"] == "Ready" and world.events() == ["Deploying", "Ready"]
    world.service["spec"]["replicas"] = {"min": 3, "max": 1}
    world.service["metadata"]["generation"] = 2
    status = world.reconcile()  # nothing raised: the verdict is on the object
    assert status["phase"] == "Failed" and status["observedGeneration"] == 2
    assert "replicas.min must not exceed replicas.max" in next(
        c["message"] for c in status["conditions"] if c["type"] == "Invalid"
    )
    assert world.events() == ["InvalidSpec"]
    assert world.controller.queue.due_in(world.controller.key("ml", "rec")) is None
    world.service["spec"]["replicas"] = {"min": 1, "max": 1}
    world.service["metadata"]["generation"] = 3
    status = world.reconcile()
    assert status["phase"] == "Ready" and {c["type"] for c in status["conditions"]} == {"ModelResolved", "Ready"}


def test_autoscaling_writes_through_the_scale_subresource(monkeypatch: pytest.MonkeyPatch) -> None:
    measured: list[str] = []

    def prometheus_load(url: str, namespace: str, service: str, *_: Any) -> Load:
        measured.append(f"{namespace}/{service}")
        return Load(350.0, 0.0)

    monkeypatch.setattr("vlmr1_operator.handlers.vlmservice.prometheus_load", prometheus_load)
    world = World()
    autoscaling = {"targetTokensPerSecondPerReplica": 100, "evaluationPeriodSeconds": 30,
                   "metricsSource": {"prometheus": {"url": "http://prometheus:9090"}}}  # fmt: skip
    world.service["spec"].update(model={"uri": "pvc://runs/rec/checkpoint-1", "digest": D1}, autoscaling=autoscaling)
    world.reconcile()  # creates the Deployment; nothing to measure yet
    assert measured == []
    world.serving(D1)
    status = world.reconcile()
    assert measured == ["ml/rec"] and world.kube.scaled == [("rec", 4)]
    assert status["throughput"]["tokensPerSecond"] == 350 and status["lastScaleTime"] == "2026-11-25T12:00:00Z"
    assert "Scaled" in world.events()
    key = world.controller.key("ml", "rec")
    assert world.controller.queue.due_in(key) == pytest.approx(30, abs=1), "due at the next evaluation"
    world.reconcile(NOW + timedelta(seconds=10))  # a pod event between evaluations measures nothing
    assert measured == ["ml/rec"] and world.kube.scaled == [("rec", 4)]
    assert world.controller.queue.due_in(key) == pytest.approx(20, abs=1)


def test_an_unreadable_job_is_named() -> None:
    world = World()
    world.checkpoint(D1)
    world.kube.live("grpojobs", "ml", "rec")["status"]["checkpoints"][0]["digest"] = "not-a-digest"
    status = world.reconcile()
    assert status["phase"] == "Pending"
    assert status["conditions"][0]["message"].startswith("GRPOJob ml/rec cannot be read: ")


JUDGE = {"url": "http://judge:8000/score", "authSecret": {"name": "judge-token", "key": "token"}}


@pytest.mark.parametrize(
    ("rewards", "extra", "invalid", "not_checked"),
    [
        ([{"name": "format"}, {"name": "rec_iou"}], [], "", False),
        ([{"name": "format"}, {"name": "rec_iuo"}], [], "spec.rewards[1].name: unknown reward 'rec_iuo'", False),
        ([{"name": "house_style"}], [], "extraRewardNames", False),
        ([{"name": "house_style"}], ["house_style"], "", False),
        # The operator image holds no reward code and calls no endpoint: the trainer checks these.
        ([{"name": "format"}, {"name": "my_rewards:exact"}], [], "", True),
        ([{"name": "judge", "remote": JUDGE}], [], "", True),
        ([{"name": "nope:missing"}, {"name": "rec_iuo"}], [], "spec.rewards[1].name", False),
    ],
)  # fmt: skip
def test_the_operator_checks_built_in_reward_names_only(
    rewards: list[dict[str, Any]], extra: list[str], invalid: str, not_checked: bool
) -> None:
    kube = MemoryKube()
    settings = OperatorSettings(extra_reward_names=extra)
    controller = GRPOJobController(kube, settings, OperatorMetrics())  # type: ignore[arg-type]
    kube.put({
        "apiVersion": "vlmr1.io/v1alpha1", "kind": "GRPOJob",
        "metadata": {"name": "rec", "namespace": "ml", "uid": "u-job", "generation": 1},
        "spec": {"model": {"uri": "hf://Qwen/Qwen2.5-VL-3B-Instruct"}, "datasets": [{"jsonl": "pvc://d/a.jsonl"}],
                 "resources": {"accelerator": "cpu"}, "rewards": rewards},
    })  # fmt: skip
    controller.reconcile("ml", "rec", NOW)
    controller.reconcile("ml", "rec", NOW + timedelta(seconds=5))  # nothing new to say
    status = kube.live("grpojobs", "ml", "rec")["status"]
    reasons = [reason for _, reason, _ in kube.events]
    if invalid:
        assert status["phase"] == "Failed" and reasons == ["InvalidSpec"]
        assert invalid in kube.events[0][2]
        return
    assert status["phase"] == "Pending"
    assert reasons == (["RewardsNotChecked", "GangCreated"] if not_checked else ["GangCreated"])
