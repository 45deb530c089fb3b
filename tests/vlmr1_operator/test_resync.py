"""Retries and due times: a failed reconcile comes back at its stated delay, not at the next sweep;
per-object state goes when the object does. A fake clock makes the timing exact; the one test
of the loop's thread waits on the retry's own event, with a timeout."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from vlmr1_operator import k8s
from vlmr1_operator.handlers.base import Controller
from vlmr1_operator.handlers.grpojob import GRPOJobController
from vlmr1_operator.handlers.vlmservice import VLMServiceController
from vlmr1_operator.metrics import OperatorMetrics
from vlmr1_operator.resync import SWEEP, DueQueue, Resync
from vlmr1_operator.settings import OperatorSettings
from vlmr1_operator.throughput import Load

from .memorykube import MemoryKube

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SETTINGS = OperatorSettings(retry_seconds=5, max_retry_seconds=60, resync_seconds=300, progress_poll_seconds=15)
D1 = "sha256:" + "1" * 64


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def grpojob(name: str = "rec", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "vlmr1.io/v1alpha1", "kind": "GRPOJob",
        "metadata": {"name": name, "namespace": "ml", "uid": f"uid-{name}", "generation": 1},
        "spec": {"model": {"uri": "hf://Qwen/Qwen2.5-VL-3B-Instruct"}, "datasets": [{"jsonl": "pvc://d/a.jsonl"}],
                 "resources": {"accelerator": "cpu"}, **spec},
    }  # fmt: skip


def vlmservice(name: str = "svc", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "vlmr1.io/v1alpha1", "kind": "VLMService",
        "metadata": {"name": name, "namespace": "ml", "uid": f"uid-{name}", "generation": 1},
        "spec": {"model": {"fromJob": {"name": "rec"}}, "engine": {"name": "transformers"},
                 "resources": {"accelerator": "cpu", "devicesPerReplica": 0}, **spec},
    }  # fmt: skip


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kube() -> MemoryKube:
    return MemoryKube()


@pytest.fixture
def queue(clock: Clock) -> DueQueue:
    return DueQueue(clock)


@pytest.fixture
def jobs(kube: MemoryKube, queue: DueQueue) -> GRPOJobController:
    return GRPOJobController(kube, SETTINGS, OperatorMetrics(), queue)  # type: ignore[arg-type]


@pytest.fixture
def services(kube: MemoryKube, queue: DueQueue) -> VLMServiceController:
    return VLMServiceController(kube, SETTINGS, OperatorMetrics(), queue)  # type: ignore[arg-type]


def resync(controllers: list[Controller], queue: DueQueue, leader: bool = True) -> Resync:
    return Resync(controllers, queue, is_leader=lambda: leader, namespaces=["ml"])


def phase(kube: MemoryKube, plural: str = "grpojobs", name: str = "rec") -> Any:
    return (kube.live(plural, "ml", name).get("status") or {}).get("phase")


# --- The queue ---------------------------------------------------------------------------------


def test_due_times(queue: DueQueue, clock: Clock) -> None:
    a, b, c = ("K", "ml", "a"), ("K", "ml", "b"), ("K", "ml", "c")
    queue.schedule(a, 10)
    queue.schedule(b, 5)
    queue.schedule(c, 7)
    queue.schedule(c, None)  # no longer due
    assert (queue.due_in(a), queue.due_in(b), queue.due_in(c)) == (10, 5, None)
    queue.schedule(a, 20, sooner_only=True)  # later: kept at 10
    queue.schedule(b, 2, sooner_only=True)  # sooner: taken
    queue.schedule(b, 3)  # a plain schedule replaces
    assert (queue.due_in(a), queue.due_in(b)) == (10, 3)
    clock.advance(2.9)
    assert queue.pop_due() == []
    clock.advance(10)
    assert queue.pop_due() == [b, a], "earliest first"
    assert len(queue) == 0


def test_a_due_time_set_during_a_reconcile_is_kept(queue: DueQueue) -> None:
    key = ("K", "ml", "a")
    mark = queue.mark()  # a reconcile begins
    queue.schedule(key, 0)  # meanwhile a change makes it due now
    queue.schedule(key, None, since=mark)  # the reconcile ends: "only a change matters"
    assert queue.due_in(key) == 0, "the change it may not have seen still counts"
    queue.schedule(key, 30, since=mark)
    assert queue.due_in(key) == 0
    mark = queue.mark()
    queue.schedule(key, 30, since=mark)  # nothing happened since this reconcile began: it decides
    assert queue.due_in(key) == 30
    queue.schedule(key, None, since=queue.mark())
    assert queue.due_in(key) is None


def test_a_sooner_due_time_wakes_a_waiting_loop() -> None:
    queue = DueQueue()
    queue.schedule(SWEEP, 3600)
    woke = threading.Event()

    def wait() -> None:
        queue.wait()
        woke.set()

    threading.Thread(target=wait, daemon=True).start()
    queue.schedule(("K", "ml", "x"), 0)
    assert woke.wait(timeout=10), "the loop slept on through a key that became due"
    queue.close()
    assert not queue.wait()


# --- Retries -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [k8s.Transient(500, "InternalError", "etcd leader changed"), k8s.Conflict(409, "Conflict", "object modified")],
    ids=["500", "409"],
)
def test_a_failed_patch_is_retried_at_its_stated_delay(
    error: k8s.ApiError, kube: MemoryKube, jobs: GRPOJobController, queue: DueQueue, clock: Clock
) -> None:
    kube.put(grpojob())
    kube.fail("patch_status", error)
    jobs.reconcile("ml", "rec", NOW)  # a watch event's reconcile: nothing raised, the status not written
    assert phase(kube) is None
    key = jobs.key("ml", "rec")
    assert queue.due_in(key) == SETTINGS.retry_seconds
    assert jobs.metrics.errors.labels(kind="GRPOJob")._value.get() == 1
    loop = resync([jobs], queue)
    clock.advance(SETTINGS.retry_seconds - 0.1)
    assert loop.step() == [] and kube.calls["patch_status"] == 1, "not before its delay"
    clock.advance(0.1)
    assert loop.step() == [key], "at its delay, not at the next sweep"
    assert phase(kube) == "Pending" and kube.calls["patch_status"] == 2
    assert queue.due_in(key) is None, "a Pending job waits for its pods' events"
    assert SETTINGS.resync_seconds > 10 * SETTINGS.retry_seconds


def test_retries_back_off_and_reset_after_a_success(
    kube: MemoryKube, jobs: GRPOJobController, queue: DueQueue, clock: Clock
) -> None:
    kube.put(grpojob())
    key = jobs.key("ml", "rec")
    loop = resync([jobs], queue)
    kube.fail("list", *(k8s.Transient(503, "ServiceUnavailable", "") for _ in range(5)))
    jobs.reconcile("ml", "rec", NOW)
    delays = [queue.due_in(key)]
    for _ in range(4):
        clock.advance(delays[-1] or 0)
        assert loop.step() == [key]
        delays.append(queue.due_in(key))
    assert delays == [5, 10, 20, 40, 60], "doubling up to max_retry_seconds"
    clock.advance(60)
    loop.step()
    assert phase(kube) == "Pending" and queue.due_in(key) is None
    kube.fail("list", k8s.Transient(503, "ServiceUnavailable", ""))
    jobs.reconcile("ml", "rec", NOW)
    assert queue.due_in(key) == 5, "a success resets the backoff"


def test_a_retry_keeps_a_sooner_due_time(kube: MemoryKube, jobs: GRPOJobController, queue: DueQueue) -> None:
    kube.put(grpojob())
    key = jobs.key("ml", "rec")
    queue.schedule(key, 1)  # say, a deadline a second away
    kube.fail("get", k8s.ApiError(403, "Forbidden", "RBAC"))  # not transient: retried all the same
    jobs.reconcile("ml", "rec", NOW)
    assert queue.due_in(key) == 1


def test_the_loop_thread_retries_without_waiting_for_the_sweep(kube: MemoryKube, jobs: GRPOJobController) -> None:
    """The real loop on the real clock: asleep with nothing due, woken by the retry a failed
    reconcile schedules, and reconciling at its delay (the sweep is 300 s away)."""
    fast = OperatorSettings(retry_seconds=0.05, resync_seconds=300, progress_poll_seconds=300)
    queue = DueQueue()
    controller = GRPOJobController(kube, fast, OperatorMetrics(), queue)  # type: ignore[arg-type]
    loop = Resync([controller], queue, is_leader=lambda: True, namespaces=["ml"])
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()  # run() without start(): no sweep is due, the loop sleeps until something is
    try:
        kube.put(grpojob())
        kube.fail("patch_status", k8s.Transient(500, "InternalError", ""))
        controller.reconcile("ml", "rec")
        assert kube.calls["patch_status"] == 1 and phase(kube) is None
        assert kube.status_written.wait(timeout=10), "the failed reconcile was never retried"
        assert phase(kube) == "Pending"
    finally:
        loop.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_an_invalid_spec_is_not_retried(kube: MemoryKube, jobs: GRPOJobController, queue: DueQueue) -> None:
    kube.put(grpojob(rewards=[{"name": "iuo"}]))
    jobs.reconcile("ml", "rec", NOW)  # nothing raised
    status = kube.live("grpojobs", "ml", "rec")["status"]
    assert status["phase"] == "Failed"
    assert {c["type"] for c in status["conditions"] if c["status"] == "True"} == {"Invalid", "Failed"}
    assert [e[1] for e in kube.events] == ["InvalidSpec"]
    assert queue.due_in(jobs.key("ml", "rec")) is None, "only an edit (a watch event) can help"
    assert jobs.metrics.reconciles.labels(kind="GRPOJob", result="invalid")._value.get() == 1
    assert jobs.metrics.jobs.labels(phase="Failed")._value.get() == 1


def test_a_crash_in_one_object_does_not_stop_the_others(
    kube: MemoryKube, jobs: GRPOJobController, queue: DueQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube.put(grpojob("good"))
    kube.put(grpojob("bad"))
    reconcile = jobs._reconcile

    def buggy(body: dict[str, Any], now: datetime) -> float | None:
        if body["metadata"]["name"] == "bad":
            raise KeyError("a bug")
        return reconcile(body, now)

    monkeypatch.setattr(jobs, "_reconcile", buggy)
    queue.schedule(SWEEP, 0)
    done = resync([jobs], queue).step()
    assert set(done) == {jobs.key("ml", "good"), jobs.key("ml", "bad")}
    assert phase(kube, name="good") == "Pending"
    assert queue.due_in(jobs.key("ml", "bad")) == SETTINGS.retry_seconds, "the crashed one is retried"
    assert queue.due_in(SWEEP) == SETTINGS.resync_seconds


# --- Due times the planners set ----------------------------------------------------------------


def test_a_running_job_is_due_at_the_progress_poll_and_a_deadline_sooner(
    kube: MemoryKube, jobs: GRPOJobController, queue: DueQueue
) -> None:
    kube.put(grpojob(runPolicy={"activeDeadlineSeconds": 600}))
    jobs.reconcile("ml", "rec", NOW)
    key = jobs.key("ml", "rec")
    assert queue.due_in(key) == 600, "Pending: due only at the deadline"
    for pod in (o for (plural, _, _), o in kube.objects.items() if plural == "pods"):
        pod["status"] = {"phase": "Running"}
    jobs.reconcile("ml", "rec", NOW)
    assert phase(kube) == "Running" and queue.due_in(key) == SETTINGS.progress_poll_seconds


# --- Leadership --------------------------------------------------------------------------------


def test_a_replica_that_does_not_lead_acts_on_nothing(
    kube: MemoryKube, jobs: GRPOJobController, queue: DueQueue
) -> None:
    kube.put(grpojob())
    queue.schedule(SWEEP, 0)
    queue.schedule(jobs.key("ml", "rec"), 0)
    assert resync([jobs], queue, leader=False).step() == []
    assert kube.calls["patch_status"] == 0 and kube.calls["list"] == 0
    assert queue.scheduled() == {SWEEP}, "what was due is the leader's; the sweep stays scheduled"


def test_when_leadership_cannot_be_read_what_was_due_is_retried(
    kube: MemoryKube, jobs: GRPOJobController, queue: DueQueue
) -> None:
    def unknown() -> bool:
        raise k8s.Transient(503, "ServiceUnavailable", "")

    queue.schedule(jobs.key("ml", "rec"), 0)
    assert Resync([jobs], queue, is_leader=unknown).step() == []
    assert queue.due_in(jobs.key("ml", "rec")) == SETTINGS.retry_seconds


# --- Pruning -----------------------------------------------------------------------------------


def test_a_deleted_job_leaves_nothing_behind(kube: MemoryKube, jobs: GRPOJobController, queue: DueQueue) -> None:
    kube.put(grpojob("a", runPolicy={"activeDeadlineSeconds": 600}))
    kube.put(grpojob("b"))
    kube.fail("list", k8s.Transient(500, "InternalError", ""))
    jobs.reconcile("ml", "b", NOW)  # b fails: a backoff entry
    jobs.reconcile("ml", "a", NOW)  # a: a due time and a phase in the metrics
    assert jobs.tracked() == {("ml", "a"), ("ml", "b")} and len(jobs.locks) == 0
    jobs.forget("ml", "a")  # the DELETED event
    assert jobs.tracked() == {("ml", "b")} and jobs.metrics.jobs.labels(phase="Pending")._value.get() == 0
    del kube.objects[("grpojobs", "ml", "b")]
    jobs.reconcile("ml", "b", NOW)  # its DELETED event was missed: the reconcile finds it gone
    assert jobs.tracked() == set() and len(queue) == 0


def test_the_sweep_prunes_objects_deleted_unseen(
    kube: MemoryKube, jobs: GRPOJobController, queue: DueQueue, clock: Clock
) -> None:
    kube.put(grpojob("kept"))
    kube.put(grpojob("gone", runPolicy={"activeDeadlineSeconds": 600}))
    jobs.reconcile("ml", "kept", NOW)
    jobs.reconcile("ml", "gone", NOW)
    del kube.objects[("grpojobs", "ml", "gone")]
    queue.schedule(SWEEP, 0)
    done = resync([jobs], queue).step()
    assert done == [jobs.key("ml", "kept")] and jobs.tracked() == {("ml", "kept")}
    assert queue.scheduled() == {SWEEP}


def test_a_deleted_service_leaves_nothing_behind(
    kube: MemoryKube, jobs: GRPOJobController, services: VLMServiceController, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("vlmr1_operator.handlers.vlmservice.prometheus_load", lambda *_: Load(10.0, 0.0))
    autoscaling = {"targetTokensPerSecondPerReplica": 100,
                   "metricsSource": {"prometheus": {"url": "http://prometheus:9090"}}}  # fmt: skip
    kube.put(
        vlmservice(replicas={"min": 1, "max": 3}, autoscaling=autoscaling, model={"uri": "pvc://c/x", "digest": D1})
    )
    kube.put(vlmservice("follower"))
    services.reconcile("ml", "svc", NOW)  # creates the Deployment
    services.reconcile("ml", "svc", NOW)  # measures: the autoscaler's memory
    assert kube.live("vlmservices", "ml", "svc")["status"]["throughput"]["tokensPerSecond"] == 10
    services.reconcile("ml", "follower", NOW)  # remembers the job it follows
    assert services.tracked() == {("ml", "svc"), ("ml", "follower")}
    assert services.followers("ml", "rec") == ["follower"]
    for name in ("svc", "follower"):
        services.forget("ml", name)
    assert services.tracked() == set() and services.followers("ml", "rec") == []
    assert len(services.locks) == 0 and len(services.queue) == 0


def test_a_jobs_event_makes_its_followers_due(
    kube: MemoryKube, jobs: GRPOJobController, services: VLMServiceController, queue: DueQueue
) -> None:
    kube.put(vlmservice("follower"))
    kube.put(vlmservice("other", model={"fromJob": {"name": "another"}}))
    services.reconcile("ml", "follower", NOW)
    services.reconcile("ml", "other", NOW)
    assert phase(kube, "vlmservices", "follower") == "Pending" and len(queue) == 0
    job = kube.put(grpojob())
    checkpoint = {"uri": "pvc://c/rec/checkpoint-2", "step": 2, "digest": D1}
    job["status"] = {"checkpoints": [checkpoint], "bestCheckpoint": checkpoint}
    services.wake_followers("ml", "rec")  # what the GRPOJob's watch event does
    assert queue.scheduled() == {services.key("ml", "follower")}
    assert resync([jobs, services], queue).step() == [services.key("ml", "follower")]
    assert ("deployments", "ml", "follower") in kube.objects


def test_a_jobs_event_during_a_followers_reconcile_is_not_lost(
    kube: MemoryKube, services: VLMServiceController, queue: DueQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service read its job, then the job's event woke it: it stays due, though its own
    reconcile (which saw no checkpoint) found nothing else to wait for."""
    kube.put(vlmservice("follower"))
    services.reconcile("ml", "follower", NOW)
    get = kube.get

    def get_then_event(resource: k8s.Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        found = get(resource, namespace, name)
        if resource.plural == "grpojobs":
            services.wake_followers("ml", "rec")
        return found

    monkeypatch.setattr(kube, "get", get_then_event)
    services.reconcile("ml", "follower", NOW)
    assert phase(kube, "vlmservices", "follower") == "Pending"
    assert queue.due_in(services.key("ml", "follower")) == 0
