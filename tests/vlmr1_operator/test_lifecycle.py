"""The GRPOJob state machine, scenario by scenario (pure: no API server, a fixed clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from vlmr1_core.api.grpojob import GRPOJob
from vlmr1_operator.builders.grpojob import spec_hash
from vlmr1_operator.lifecycle import Plan, PodState, plan
from vlmr1_operator.settings import OperatorSettings

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SETTINGS = OperatorSettings()


def job(status: dict[str, Any] | None = None, generation: int = 1, **spec: Any) -> GRPOJob:
    body: dict[str, Any] = {
        "apiVersion": "vlmr1.io/v1alpha1",
        "kind": "GRPOJob",
        "metadata": {"name": "j", "namespace": "ns", "uid": "u1", "generation": generation},
        "spec": {
            "model": {"uri": "hf://Qwen/Qwen2.5-VL-3B-Instruct"},
            "datasets": [{"jsonl": "pvc://d/a.jsonl"}],
            "resources": {"nodes": 2, "processesPerNode": 2},
            **spec,
        },
    }
    if status is not None:
        body["status"] = status
    return GRPOJob.model_validate(body)


def pods(j: GRPOJob, *phases: str, restart: int = 0, spec: str | None = None) -> list[PodState]:
    return [
        PodState(f"j-node-{i}", i, restart, spec or spec_hash(j), phase, ip=f"10.0.0.{i}")
        for i, phase in enumerate(phases)
    ]


def step(j: GRPOJob, observed: list[PodState], now: datetime = T0) -> tuple[Plan, GRPOJob]:
    """Reconcile once and return the plan and the job with its new status (what the handler writes)."""
    decided = plan(j, observed, now, SETTINGS)
    data = j.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["status"] = decided.status
    return decided, GRPOJob.model_validate(data)


def kinds(plan: Plan) -> list[str]:
    return [o["kind"] for o in plan.ensure]


def true_conditions(j: GRPOJob) -> dict[str, str]:
    assert j.status is not None
    return {c.type: c.reason for c in j.status.conditions if c.status == "True"}


def test_new_job_creates_the_whole_gang() -> None:
    plan, j = step(job(), [])
    assert kinds(plan) == ["ConfigMap", "Service", "Service", "Pod", "Pod"]
    assert j.status is not None and j.status.phase == "Pending"
    assert j.status.start_time == T0
    assert j.status.observed_generation == 1
    assert true_conditions(j) == {"Pending": "GangCreated"}
    assert [e.reason for e in plan.events] == ["GangCreated"]


def test_running_gang_and_a_no_op_reconcile() -> None:
    _, j = step(job(), [])
    plan, j = step(j, pods(j, "Running", "Running"), T0 + timedelta(seconds=5))
    assert j.status is not None and j.status.phase == "Running"
    assert "Pod" not in kinds(plan) and plan.delete_pods == []
    assert [e.reason for e in plan.events] == ["Running"]
    assert j.status.replicas["master"].active == 1 and j.status.replicas["worker"].active == 1
    again, _ = step(j, pods(j, "Running", "Running"), T0 + timedelta(seconds=30))
    assert again.status == plan.status, "a reconcile that changes nothing must compute the same status"
    assert again.events == [] and again.delete_pods == []


def test_master_success_finishes_the_job_and_stops_workers() -> None:
    _, j = step(job(), [])
    plan, j = step(j, pods(j, "Succeeded", "Running"), T0 + timedelta(minutes=3))
    assert j.status is not None and j.status.phase == "Succeeded"
    assert plan.delete_pods == ["j-node-1"]
    assert j.status.completion_time == T0 + timedelta(minutes=3)
    assert true_conditions(j) == {"Succeeded": "MasterSucceeded"}
    assert {c.type: c.status for c in j.status.conditions}["Pending"] == "False"


def test_failed_pod_restarts_the_gang_then_backoff_fails_it() -> None:
    j = job(runPolicy={"backoffLimit": 1})
    _, j = step(j, [])
    failed = pods(j, "Running", "Failed")
    plan, j = step(j, failed)
    assert j.status is not None and (j.status.phase, j.status.restarts) == ("Restarting", 1)
    assert sorted(plan.delete_pods) == ["j-node-0", "j-node-1"]
    assert plan.events[0].type == "Warning" and "j-node-1 failed" in plan.events[0].message
    # Old pods still terminating: wait, create nothing.
    terminating = [PodState(p.name, p.index, 0, p.spec_hash, p.phase, terminating=True) for p in failed]
    plan, j = step(j, terminating)
    assert plan.ensure == [] and j.status is not None and j.status.phase == "Restarting"
    # Gone: the next generation is created, labelled restart 1.
    plan, j = step(j, [])
    new_pods = [o for o in plan.ensure if o["kind"] == "Pod"]
    assert [p["metadata"]["labels"]["vlmr1.io/restart"] for p in new_pods] == ["1", "1"]
    # It fails again: the limit (1) is used up.
    plan, j = step(j, pods(j, "Failed", "Running", restart=1))
    assert j.status is not None and j.status.phase == "Failed"
    assert true_conditions(j) == {"Failed": "BackoffLimitExceeded"}
    assert sorted(plan.delete_pods) == ["j-node-0", "j-node-1"]


def test_a_deleted_pod_restarts_the_gang() -> None:
    _, j = step(job(), [])
    plan, j = step(j, pods(j, "Running"))  # node 1 vanished
    assert j.status is not None and j.status.restarts == 1
    assert "node 1 disappeared" in plan.events[0].message


def test_suspend_and_resume() -> None:
    _, j = step(job(), [])
    _, j = step(j, pods(j, "Running", "Running"))
    suspended = job(status=j.status.model_dump(mode="json", by_alias=True, exclude_none=True) if j.status else None,
                    runPolicy={"suspend": True})  # fmt: skip
    plan, j = step(suspended, pods(suspended, "Running", "Running"))
    assert j.status is not None and j.status.phase == "Suspended"
    assert sorted(plan.delete_pods) == ["j-node-0", "j-node-1"]
    plan, j = step(j, [])
    assert plan.ensure == [] and plan.events == []  # stays suspended, nothing created
    resumed = job(status=j.status.model_dump(mode="json", by_alias=True, exclude_none=True) if j.status else None)
    plan, j = step(resumed, [])
    assert "Pod" in kinds(plan)
    assert j.status is not None and j.status.phase == "Pending" and j.status.restarts == 0


def test_spec_edit_restarts_the_gang_without_using_backoff() -> None:
    _, j = step(job(), [])
    _, j = step(j, pods(j, "Running", "Running"))
    status = j.status.model_dump(mode="json", by_alias=True, exclude_none=True) if j.status else None
    edited = job(status=status, generation=2, grpo={"beta": 0.1})
    plan, j = step(edited, pods(edited, "Running", "Running", spec=spec_hash(job())))
    assert j.status is not None and j.status.phase == "Restarting" and j.status.restarts == 0
    assert true_conditions(j) == {"Restarting": "SpecChanged"}
    assert j.status.observed_generation == 2
    assert sorted(plan.delete_pods) == ["j-node-0", "j-node-1"]


def test_run_policy_edit_applies_in_place() -> None:
    _, j = step(job(), [])
    _, j = step(j, pods(j, "Running", "Running"))
    status = j.status.model_dump(mode="json", by_alias=True, exclude_none=True) if j.status else None
    edited = job(status=status, generation=2, runPolicy={"backoffLimit": 9})
    plan, j = step(edited, pods(edited, "Running", "Running"))
    assert plan.delete_pods == [] and j.status is not None and j.status.phase == "Running"


def test_active_deadline_fails_the_job() -> None:
    _, j = step(job(runPolicy={"activeDeadlineSeconds": 60}), [])
    plan, j = step(j, pods(j, "Pending", "Running"), T0 + timedelta(seconds=30))
    assert plan.requeue_after == 30, "due again when the deadline passes"
    plan, j = step(j, pods(j, "Running", "Running"), T0 + timedelta(seconds=50))
    assert plan.requeue_after == 10, "the deadline, being sooner than the next progress poll"
    plan, j = step(j, pods(j, "Running", "Running"), T0 + timedelta(seconds=61))
    assert j.status is not None and j.status.phase == "Failed"
    assert true_conditions(j) == {"Failed": "DeadlineExceeded"}
    assert sorted(plan.delete_pods) == ["j-node-0", "j-node-1"]


def test_ttl_deletes_a_finished_job() -> None:
    _, j = step(job(runPolicy={"ttlSecondsAfterFinished": 100}), [])
    plan, j = step(j, pods(j, "Succeeded", "Succeeded"), T0)
    assert plan.requeue_after == 100 and not plan.delete_job
    plan, _ = step(j, pods(j, "Succeeded", "Succeeded"), T0 + timedelta(seconds=50))
    assert plan.requeue_after == 50 and not plan.delete_job
    plan, _ = step(j, [], T0 + timedelta(seconds=100))
    assert plan.delete_job


def test_only_a_running_job_is_polled_for_progress() -> None:
    plan, j = step(job(), [])
    assert (j.status and j.status.phase, plan.requeue_after) == ("Pending", None)
    plan, j = step(j, pods(j, "Running", "Running"))
    assert (j.status and j.status.phase, plan.requeue_after) == ("Running", SETTINGS.progress_poll_seconds)
    suspended = job(status=j.status.model_dump(mode="json", by_alias=True, exclude_none=True) if j.status else None,
                    runPolicy={"suspend": True})  # fmt: skip
    plan, j = step(suspended, [])
    assert (j.status and j.status.phase, plan.requeue_after) == ("Suspended", None)


def test_finished_job_without_ttl_is_kept() -> None:
    _, j = step(job(), [])
    _, j = step(j, pods(j, "Succeeded", "Succeeded"))
    plan, _ = step(j, [], T0 + timedelta(days=30))
    assert not plan.delete_job and plan.ensure == [] and plan.requeue_after is None


def test_user_error_fails_the_job_without_a_restart() -> None:
    """Exit 2 is the trainer refusing its inputs (a bad sample, a pinned digest that does not
    match): a new gang would fail the same way, so no restart is spent on it."""
    j = job(runPolicy={"backoffLimit": 3})
    _, j = step(j, [])
    refused = pods(j, "Failed", "Running")
    line = "vlmr1_trainer (rank 0): spec.model.digest: the starting checkpoint pvc://c/x has digest sha256:aa"
    refused[0] = PodState(
        refused[0].name, 0, 0, refused[0].spec_hash, "Failed", exit_code=2, message=f"loading...\n{line}\n"
    )
    plan, j = step(j, refused)
    assert j.status is not None and (j.status.phase, j.status.restarts) == ("Failed", 0)
    assert true_conditions(j) == {"Failed": "UserError"}
    condition = next(c for c in j.status.conditions if c.type == "Failed")
    assert condition.message == f"pod j-node-0 stopped on a user error: {line}"
    assert sorted(plan.delete_pods) == ["j-node-0", "j-node-1"]
    assert [e.reason for e in plan.events] == ["UserError"]
    # Any other exit code still restarts the gang.
    j = job(runPolicy={"backoffLimit": 3})
    _, j = step(j, [])
    crashed = pods(j, "Failed", "Running")
    crashed[0] = PodState(crashed[0].name, 0, 0, crashed[0].spec_hash, "Failed", exit_code=1, message="Traceback")
    _, j = step(j, crashed)
    assert j.status is not None and (j.status.phase, j.status.restarts) == ("Restarting", 1)


def test_pod_state_from_a_manifest() -> None:
    pod = {
        "metadata": {
            "name": "j-node-1",
            "labels": {"vlmr1.io/node-index": "1", "vlmr1.io/restart": "2"},
            "annotations": {"vlmr1.io/spec-hash": "abc"},
            "deletionTimestamp": "2026-11-25T12:00:00Z",
        },
        "status": {
            "phase": "Failed",
            "podIP": "10.1.2.3",
            "containerStatuses": [
                {
                    "name": "trainer",
                    "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "message": "killed\n"}},
                }
            ],
        },
    }
    state = PodState.from_manifest(pod)
    assert (state.index, state.restart, state.spec_hash, state.phase, state.terminating) == (
        1,
        2,
        "abc",
        "Failed",
        True,
    )
    assert state.reason == "container trainer exited 137 (OOMKilled)"
    assert (state.exit_code, state.message) == (137, "killed")
    assert state.ip == "10.1.2.3"


REMOTE = {"url": "http://judge:8000/score", "authSecret": {"name": "judge-token", "key": "token"}}


def not_checked(plan: Plan) -> list[str]:
    return [e.message for e in plan.events if e.reason == "RewardsNotChecked"]


def test_rewards_the_operator_cannot_check_are_named_once() -> None:
    """References and remote rewards are the trainer's to check: one Normal event when the gang is
    first made, none on later reconciles or gang restarts, none for built-in names."""
    rewards = [{"name": "my_rewards:exact"}, {"name": "format"}, {"name": "judge", "remote": REMOTE}]
    plan, j = step(job(rewards=rewards), [])
    (message,) = not_checked(plan)
    assert [e.type for e in plan.events] == ["Normal", "Normal"]
    assert "my_rewards:exact, judge (remote http://judge:8000/score)" in message
    assert "checked by the trainer before the first step" in message and "format" not in message
    plan, j = step(j, pods(j, "Running", "Running"), T0 + timedelta(seconds=5))
    assert not_checked(plan) == []
    plan, j = step(j, pods(j, "Running", "Failed"), T0 + timedelta(seconds=10))
    plan, j = step(j, [], T0 + timedelta(seconds=15))  # the restarted gang
    assert "Pod" in kinds(plan) and not_checked(plan) == []
    plan, _ = step(job(rewards=[{"name": "format"}, {"name": "rec_iou"}]), [])
    assert not_checked(plan) == []


def test_a_spec_edit_names_the_unchecked_rewards_again() -> None:
    _, j = step(job(rewards=[{"name": "format"}]), [])
    _, j = step(j, pods(j, "Running", "Running"))
    status = j.status.model_dump(mode="json", by_alias=True, exclude_none=True) if j.status else None
    edited = job(status=status, generation=2, rewards=[{"name": "format"}, {"name": "my_rewards:v2"}])
    plan, j = step(edited, pods(edited, "Running", "Running", spec=spec_hash(job(rewards=[{"name": "format"}]))))
    assert [e.reason for e in plan.events] == ["SpecChanged", "RewardsNotChecked"]
    assert "my_rewards:v2" in not_checked(plan)[0]
    plan, _ = step(j, [])  # the new gang: already said
    assert "Pod" in kinds(plan) and not_checked(plan) == []
