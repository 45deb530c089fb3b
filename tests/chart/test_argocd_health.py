"""The Argo CD health checks shipped with the chart (helm/vlmr1/argocd/*.lua), run the way Argo CD
runs them: Lua 5.1 (Argo CD's gopher-lua implements 5.1; lupa.lua51 here), only the base and table
libraries (what Argo CD opens for a script from argocd-cm without useOpenLibs), the live object
as the global `obj`, and the chunk's return value read as {status, message}.

Sample objects cover every phase of both kinds and the edge cases; statuses are validated
against the pydantic status models so that a renamed field breaks the samples, and some are
produced by the operator's own planners (lifecycle.plan, service_lifecycle.plan; the controllers
that write them are tested in tests/vlmr1_operator).
argocd-cm-patch.yaml is generated from the scripts (golden; VLMR1_UPDATE_GOLDEN=1 rewrites it).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from lupa import lua51

from vlmr1_core.api.grpojob import GRPOJob, GRPOJobPhase, GRPOJobStatus
from vlmr1_core.api.vlmservice import VLMService, VLMServicePhase, VLMServiceStatus
from vlmr1_operator.builders.grpojob import spec_hash
from vlmr1_operator.builders.vlmservice import DIGEST_ANNOTATION
from vlmr1_operator.lifecycle import PodState, plan
from vlmr1_operator.service_lifecycle import Observed
from vlmr1_operator.service_lifecycle import plan as plan_service
from vlmr1_operator.settings import OperatorSettings

from .conftest import CHART

ARGOCD = CHART / "argocd"
SCRIPTS = {"GRPOJob": ARGOCD / "grpojob-health.lua", "VLMService": ARGOCD / "vlmservice-health.lua"}
PATCH = ARGOCD / "argocd-cm-patch.yaml"
STATUS_MODELS = {"GRPOJob": GRPOJobStatus, "VLMService": VLMServiceStatus}
PHASES = {"GRPOJob": get_args(GRPOJobPhase), "VLMService": get_args(VLMServicePhase)}
#: What Argo CD accepts from a health script (anything else becomes Unknown there).
HEALTH = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SETTINGS = OperatorSettings()

# --- Running a script as Argo CD does -------------------------------------------------------

#: Argo CD opens base, table, package and a restricted os for argocd-cm scripts: no string or
#: math library, and so no string methods either. Taking them away here makes a script that
#: uses them fail the tests instead of failing in Argo CD.
RESTRICT = """
debug.setmetatable("", nil)
string, math, io, os, debug, coroutine, package, require, python = nil
"""


def to_lua(runtime: Any, value: Any) -> Any:
    """A JSON-like Python value as Argo CD hands it to Lua: dicts become tables, lists 1-based
    arrays (nested), None an absent field."""
    if isinstance(value, dict):
        table = runtime.table()
        for key, item in value.items():
            if item is not None:
                table[key] = to_lua(runtime, item)
        return table
    if isinstance(value, list):
        table = runtime.table()
        for index, item in enumerate(value, start=1):
            table[index] = to_lua(runtime, item)
        return table
    assert isinstance(value, bool | int | float | str), f"not JSON: {value!r}"
    return value


def health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    """The script's verdict on `obj`; a Lua error fails the test."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=False, register_eval=False, register_builtins=False)
    runtime.execute(RESTRICT)
    assert runtime.eval("_VERSION") == "Lua 5.1"
    before = set(runtime.globals().keys())
    runtime.globals().obj = to_lua(runtime, obj)
    result = runtime.execute(SCRIPTS[kind].read_text(encoding="utf-8"))
    leaked = set(runtime.globals().keys()) - before - {"obj"}
    assert not leaked, f"the script sets globals {leaked} (locals only: Argo CD reuses nothing, but a typo hides)"
    assert lua51.lua_type(result) == "table", f"the script returned {result!r}, not a table"
    verdict = dict(result.items())
    assert set(verdict) == {"status", "message"}, verdict
    assert verdict["status"] in HEALTH, verdict
    assert isinstance(verdict["message"], str) and verdict["message"], verdict
    return verdict


# --- Sample objects -----------------------------------------------------------------------

D1 = "sha256:" + "a" * 64
D2 = "sha256:" + "b" * 64
INVALID_JOB = (
    "GRPOJob ml/rec is invalid: spec.rewards[0].name: unknown reward 'iuo'; known rewards: accuracy, format, iou"
)


def cond(type_: str, status: str = "True", reason: str = "", message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-11-25T12:00:00Z",
    }


def grpojob(status: dict[str, Any] | None, generation: int = 3) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "vlmr1.io/v1alpha1",
        "kind": "GRPOJob",
        "metadata": {"name": "rec", "namespace": "ml", "generation": generation},
        "spec": {"model": {"uri": "hf://Qwen/Qwen2.5-VL-3B-Instruct"}, "datasets": [{"jsonl": "pvc://d/a.jsonl"}]},
    }
    if status is not None:
        obj["status"] = status
    return obj


def vlmservice(status: dict[str, Any] | None, generation: int = 3, **replicas: int) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "vlmr1.io/v1alpha1",
        "kind": "VLMService",
        "metadata": {"name": "rec", "namespace": "ml", "generation": generation},
        "spec": {"model": {"fromJob": {"name": "rec"}}, "replicas": {"min": 1, "max": 4, **replicas}},
    }
    if status is not None:
        obj["status"] = status
    return obj


def served(**counts: int) -> list[dict[str, Any]]:
    digests = {"d1": D1, "d2": D2}
    return [{"digest": digests[name], "replicas": n} for name, n in counts.items()]


@dataclass(frozen=True)
class Case:
    id: str
    kind: str
    obj: dict[str, Any]
    status: str
    #: Substrings the message must contain.
    says: tuple[str, ...] = ()
    #: False for statuses the operator never writes (missing required fields, unknown phase).
    schema: bool = True


JOB_CASES = [
    Case("job-no-status", "GRPOJob", grpojob(None), "Progressing", ("Waiting for the vlmr1 operator",)),
    Case("job-empty-status", "GRPOJob", grpojob({}), "Progressing", ("Waiting for the vlmr1 operator",)),
    Case(
        "job-stale-generation", "GRPOJob", grpojob({"phase": "Succeeded", "observedGeneration": 2}), "Progressing",
        ("reconcile generation 3", "describes generation 2"),
    ),
    Case(
        "job-pending", "GRPOJob",
        grpojob({"phase": "Pending", "observedGeneration": 3,
                 "conditions": [cond("Pending", reason="GangCreated",
                                     message="2 pod(s) created, waiting for them to run")]}),
        "Progressing", ("Pending: 2 pod(s) created, waiting for them to run",),
    ),
    Case(
        "job-running-with-progress", "GRPOJob",
        grpojob({"phase": "Running", "observedGeneration": 3,
                 "conditions": [cond("Pending", "False"),
                                cond("Running", reason="AllPodsRunning", message="all 2 pod(s) running")],
                 "progress": {"step": 12, "maxSteps": 100, "rewardMean": 0.41249, "kl": 0.01}}),
        "Progressing", ("Running: step 12/100, mean reward 0.412; all 2 pod(s) running",),
    ),
    Case(
        "job-running-before-the-trainer-reports", "GRPOJob",
        grpojob({"phase": "Running", "observedGeneration": 3,
                 "conditions": [cond("Running", reason="AllPodsRunning", message="all 2 pod(s) running")]}),
        "Progressing", ("Running: all 2 pod(s) running",),
    ),
    Case(
        "job-running-without-max-steps", "GRPOJob",
        grpojob({"phase": "Running", "observedGeneration": 3, "progress": {"step": 7, "rewardMean": -0.5}}),
        "Progressing", ("Running: step 7, mean reward -0.500",),
    ),
    Case(
        "job-restarting", "GRPOJob",
        grpojob({"phase": "Restarting", "observedGeneration": 3, "restarts": 1,
                 "conditions": [cond("Running", "False"), cond("Restarting", reason="PodFailed",
                                message="pod rec-node-1 failed: OOMKilled; restarting the whole gang (1/3)")],
                 "progress": {"step": 40, "maxSteps": 100, "rewardMean": 0.0004}}),
        "Progressing", ("gang restart 1", "step 40/100, mean reward 0.000", "pod rec-node-1 failed: OOMKilled"),
    ),
    Case(
        "job-suspended", "GRPOJob",
        grpojob({"phase": "Suspended", "observedGeneration": 3, "progress": {"step": 40, "maxSteps": 100},
                 "conditions": [cond("Suspended", reason="Suspended", message="runPolicy.suspend is true")]}),
        "Suspended", ("runPolicy.suspend is true", "step 40/100"),
    ),
    Case(
        "job-succeeded", "GRPOJob",
        grpojob({"phase": "Succeeded", "observedGeneration": 3,
                 "conditions": [cond("Succeeded", reason="MasterSucceeded", message="the master pod exited 0")],
                 "progress": {"step": 100, "maxSteps": 100, "rewardMean": 0.7345},
                 "bestCheckpoint": {"uri": "pvc://runs/rec/checkpoint-80", "step": 80, "digest": D1, "best": True}}),
        "Healthy", ("Succeeded: step 100/100, mean reward 0.735; best checkpoint at step 80",),
    ),
    Case(
        "job-failed-backoff", "GRPOJob",
        grpojob({"phase": "Failed", "observedGeneration": 3,
                 "conditions": [cond("Failed", reason="BackoffLimitExceeded",
                                     message="pod rec-node-0 failed; backoffLimit 3 restart(s) used up")]}),
        "Degraded", ("Failed: pod rec-node-0 failed; backoffLimit 3 restart(s) used up",),
    ),
    Case(
        "job-invalid-spec", "GRPOJob",
        grpojob({"phase": "Failed", "observedGeneration": 3,
                 "conditions": [cond("Invalid", reason="InvalidSpec", message=INVALID_JOB),
                                cond("Failed", reason="InvalidSpec", message="not this one")]}),
        "Degraded", (INVALID_JOB,),
    ),
    Case("job-failed-without-conditions", "GRPOJob", grpojob({"phase": "Failed"}), "Degraded", ("Failed",)),
    Case(
        "job-without-observed-generation", "GRPOJob", grpojob({"phase": "Running", "conditions": []}), "Progressing",
        ("Running",),
    ),
    Case(
        "job-sparse-fields", "GRPOJob",
        grpojob({"phase": "Restarting", "observedGeneration": 3,
                 "conditions": [{"type": "Restarting", "status": "True"}], "progress": {}, "bestCheckpoint": {}}),
        "Progressing", ("Restarting",), schema=False,
    ),
    Case(
        "job-without-metadata", "GRPOJob",
        {"kind": "GRPOJob", "status": {"phase": "Succeeded", "observedGeneration": 9}}, "Healthy", ("Succeeded",),
    ),
    Case(
        "job-unknown-phase", "GRPOJob", grpojob({"phase": "Exploding", "observedGeneration": 3}), "Unknown",
        ("Unknown GRPOJob phase Exploding",), schema=False,
    ),
]  # fmt: skip

RESOLVED = cond("ModelResolved", reason="Resolved", message=f"serving {D2}")
SERVICE_CASES = [
    Case("svc-no-status", "VLMService", vlmservice(None), "Progressing", ("Waiting for the vlmr1 operator",)),
    Case(
        "svc-stale-generation", "VLMService",
        vlmservice({"phase": "Ready", "observedGeneration": 1, "readyReplicas": 1, "modelDigest": D1,
                    "servedDigests": served(d1=1)}),
        "Progressing", ("reconcile generation 3", "describes generation 1"),
    ),
    Case(
        "svc-pending", "VLMService",
        vlmservice({"phase": "Pending", "observedGeneration": 3,
                    "conditions": [RESOLVED, cond("Ready", "False", "NotReady", "0/1 replica(s) ready")]}),
        "Progressing", ("Pending: 0/1 replica(s) ready",),
    ),
    Case(
        "svc-model-not-resolved-yet", "VLMService",
        vlmservice({"phase": "Pending", "observedGeneration": 3, "conditions": [
            cond("ModelResolved", "False", "CheckpointNotFound", "GRPOJob ml/rec has no 'best' checkpoint yet"),
            cond("Ready", "False", "NotReady", "0/1 replica(s) ready")]}),
        "Progressing", ("Model not resolved: GRPOJob ml/rec has no 'best' checkpoint yet", "0/1 replica(s) ready"),
    ),
    Case(
        "svc-model-unresolvable-old-replicas-serve", "VLMService",
        vlmservice({"phase": "Ready", "observedGeneration": 3, "readyReplicas": 2, "modelDigest": D1,
                    "servedDigests": served(d1=2), "conditions": [
                        cond("ModelResolved", "False", "CheckpointNotFound", "GRPOJob ml/other does not exist")]},
                   count=2),
        "Progressing", ("GRPOJob ml/other does not exist", f"2/2 replica(s) ready on {D1}"),
    ),
    Case(
        "svc-ready", "VLMService",
        vlmservice({"phase": "Ready", "observedGeneration": 3, "replicas": 2, "readyReplicas": 2, "modelDigest": D2,
                    "servedDigests": served(d2=2), "endpoint": "http://rec.ml.svc:8000/v1",
                    "conditions": [RESOLVED, cond("Ready", "True", "AllReplicasReady", "2/2 replica(s) ready")]},
                   count=2),
        "Healthy", (f"2/2 replica(s) ready on {D2} at http://rec.ml.svc:8000/v1",),
    ),
    Case(
        "svc-rollout-mixed-digests", "VLMService",
        vlmservice({"phase": "Progressing", "observedGeneration": 3, "replicas": 3, "readyReplicas": 2,
                    "modelDigest": D2, "servedDigests": served(d1=1, d2=1), "conditions": [RESOLVED]}, count=2),
        "Progressing", (f"rolling out {D2}: 1/2 replica(s) ready on it; still serving {D1} (1)",),
    ),
    Case(
        "svc-ready-phase-but-an-old-digest-served", "VLMService",
        vlmservice({"phase": "Ready", "observedGeneration": 3, "readyReplicas": 3, "modelDigest": D2,
                    "servedDigests": served(d1=1, d2=2)}, count=2),
        "Progressing", (f"still serving {D1} (1)",),
    ),
    Case(
        "svc-scaling-up", "VLMService",
        vlmservice({"phase": "Progressing", "observedGeneration": 3, "readyReplicas": 1, "modelDigest": D2,
                    "servedDigests": served(d2=1)}, count=3),
        "Progressing", (f"Progressing: 1/3 replica(s) ready on {D2}",),
    ),
    Case(
        "svc-ready-without-served-digests-short", "VLMService",
        vlmservice({"phase": "Ready", "observedGeneration": 3, "readyReplicas": 1, "modelDigest": D2}, count=2),
        "Progressing", ("1/2 replica(s) ready",),
    ),
    Case(
        "svc-ready-without-served-digests", "VLMService",
        vlmservice({"phase": "Ready", "observedGeneration": 3, "readyReplicas": 2}, count=2), "Healthy",
        ("2/2 replica(s) ready",),
    ),
    Case(
        "svc-scaled-to-zero", "VLMService",
        vlmservice({"phase": "Progressing", "observedGeneration": 3, "replicas": 0, "readyReplicas": 0,
                    "modelDigest": D2, "servedDigests": []}, min=0, count=0),
        "Healthy", ("Scaled to zero",),
    ),
    Case(
        "svc-scaling-to-zero", "VLMService",
        vlmservice({"phase": "Progressing", "observedGeneration": 3, "readyReplicas": 1, "modelDigest": D2,
                    "servedDigests": served(d2=1)}, min=0, count=0),
        "Progressing", (f"1/0 replica(s) ready on {D2}",),
    ),
    Case(
        "svc-invalid-spec", "VLMService",
        vlmservice({"phase": "Failed", "observedGeneration": 3, "conditions": [
            cond("Invalid", reason="InvalidSpec", message="VLMService ml/rec is invalid: spec.replicas.min: too big"),
            cond("Failed", reason="InvalidSpec", message="VLMService ml/rec is invalid: spec.replicas.min: too big")]}),
        "Degraded", ("Failed: VLMService ml/rec is invalid: spec.replicas.min: too big",),
    ),
    Case(
        "svc-failed-without-invalid", "VLMService",
        vlmservice({"phase": "Failed", "observedGeneration": 3,
                    "conditions": [cond("Invalid", "False"), cond("Failed", reason="Broken", message="it broke")]}),
        "Degraded", ("Failed: it broke",),
    ),
    Case("svc-failed-without-conditions", "VLMService", vlmservice({"phase": "Failed"}), "Degraded", ("Failed",)),
    Case(
        "svc-fixed-spec-keeps-an-old-invalid-condition", "VLMService",
        vlmservice({"phase": "Ready", "observedGeneration": 3, "readyReplicas": 1, "modelDigest": D2,
                    "servedDigests": served(d2=1), "conditions": [cond("Invalid", message="old problem")]}),
        "Healthy", (f"1/1 replica(s) ready on {D2}",),
    ),
    Case(
        "svc-without-spec-and-metadata", "VLMService",
        {"kind": "VLMService", "status": {"phase": "Ready", "readyReplicas": 1, "modelDigest": D1,
                                          "servedDigests": served(d1=1)}},
        "Healthy", (f"1/1 replica(s) ready on {D1}",),
    ),
    Case(
        "svc-sparse-fields", "VLMService",
        vlmservice({"phase": "Progressing", "conditions": [{"type": "ModelResolved"}], "servedDigests": [{}]}),
        "Progressing", ("0/1 replica(s) ready",), schema=False,
    ),
    Case(
        "svc-unknown-phase", "VLMService", vlmservice({"phase": "Paused", "observedGeneration": 3}), "Unknown",
        ("Unknown VLMService phase Paused",), schema=False,
    ),
]  # fmt: skip

CASES = JOB_CASES + SERVICE_CASES


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_health(case: Case) -> None:
    if case.schema and "status" in case.obj:
        STATUS_MODELS[case.kind].model_validate(case.obj["status"])  # the samples use the real field names
    verdict = health(case.kind, case.obj)
    assert verdict["status"] == case.status, verdict["message"]
    for text in case.says:
        assert text in verdict["message"], verdict["message"]


def test_case_ids_are_unique() -> None:
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("kind", sorted(SCRIPTS))
def test_every_phase_of_the_model_is_handled(kind: str) -> None:
    """A phase added to the pydantic model fails here until the script maps it and a case shows how."""
    cased = {c.obj.get("status", {}).get("phase") for c in CASES if c.kind == kind and c.schema}
    assert set(PHASES[kind]) <= cased, f"no sample {kind} in phase(s) {set(PHASES[kind]) - cased}"
    assert cased - {None} <= set(PHASES[kind]), "a sample uses a phase the model does not have"
    make = grpojob if kind == "GRPOJob" else vlmservice
    for phase in PHASES[kind]:
        verdict = health(kind, make({"phase": phase, "observedGeneration": 3}))
        assert verdict["status"] != "Unknown", f"{kind} phase {phase}: {verdict}"


# --- Robustness: whatever is missing or mistyped, the script answers ----------------------


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path into a JSON-like value."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield (*prefix, key)
        yield from paths(item, (*prefix, key))


def edited(obj: dict[str, Any], path: tuple[Any, ...], edit: Callable[[Any, Any], None]) -> dict[str, Any]:
    copied = copy.deepcopy(obj)
    parent = copied
    for key in path[:-1]:
        parent = parent[key]
    edit(parent, path[-1])
    return copied


def remove(parent: Any, key: Any) -> None:
    del parent[key]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_any_field_missing_or_of_another_type_still_gives_a_verdict(case: Case) -> None:
    """No Lua error (which Argo CD would show instead of a health) for any one field removed or
    replaced by a string, a number, a boolean, an empty table or a list."""
    replacements: list[Any] = ["x", 7, True, {}, ["x"]]
    for path in paths(case.obj):
        health(case.kind, edited(case.obj, path, remove))
        for value in replacements:
            health(case.kind, edited(case.obj, path, lambda parent, key, v=value: parent.__setitem__(key, v)))


# --- Statuses the operator itself writes ---------------------------------------------------


def job_model(status: dict[str, Any] | None = None, generation: int = 1, **spec: Any) -> GRPOJob:
    body = grpojob(status, generation)
    body["spec"].update(resources={"nodes": 2, "processesPerNode": 2}, **spec)
    return GRPOJob.model_validate(body)


def job_step(job: GRPOJob, phases: tuple[str, ...], restart: int = 0) -> tuple[GRPOJob, dict[str, str]]:
    """One lifecycle.plan over pods in those phases: the new job and its health."""
    pods = [PodState(f"rec-node-{i}", i, restart, spec_hash(job), phase) for i, phase in enumerate(phases)]
    decided = plan(job, pods, NOW, SETTINGS)
    data = job.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["status"] = decided.status
    return GRPOJob.model_validate(data), health("GRPOJob", data)


def test_grpojob_statuses_from_the_lifecycle() -> None:
    job = job_model(runPolicy={"backoffLimit": 1})
    job, verdict = job_step(job, ())
    assert (job.status and job.status.phase, verdict["status"]) == ("Pending", "Progressing")
    assert "2 pod(s) created" in verdict["message"]
    job, verdict = job_step(job, ("Running", "Running"))
    assert (job.status and job.status.phase, verdict["status"]) == ("Running", "Progressing")
    job, verdict = job_step(job, ("Running", "Failed"))
    assert (job.status and job.status.phase, verdict["status"]) == ("Restarting", "Progressing")
    assert "gang restart 1" in verdict["message"] and "rec-node-1 failed" in verdict["message"]
    job, verdict = job_step(job, ())
    job, verdict = job_step(job, ("Failed", "Running"), restart=1)
    assert (job.status and job.status.phase, verdict["status"]) == ("Failed", "Degraded")
    assert "backoffLimit 1 restart(s) used up" in verdict["message"]

    done = job_model()
    done, _ = job_step(done, ())
    done, verdict = job_step(done, ("Succeeded", "Running"))
    assert (done.status and done.status.phase, verdict["status"]) == ("Succeeded", "Healthy")

    running, _ = job_step(job_model(), ())
    suspended = job_model(running.status and running.status.model_dump(mode="json", by_alias=True, exclude_none=True),
                          generation=2, runPolicy={"suspend": True})  # fmt: skip
    # Before the operator sees generation 2 the old status is not trusted.
    stale = suspended.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert health("GRPOJob", stale) == {
        "status": "Progressing",
        "message": "Waiting for the vlmr1 operator to reconcile generation 2 (status describes generation 1)",
    }
    suspended, verdict = job_step(suspended, ())
    assert (suspended.status and suspended.status.phase, verdict["status"]) == ("Suspended", "Suspended")


def service_step(
    status: VLMServiceStatus | None, job: GRPOJob | None, *served: str, generation: int = 3
) -> tuple[VLMServiceStatus, dict[str, str]]:
    """One service_lifecycle.plan: `served` are the digests of its ready pods (a Deployment exists
    once any serve); the new status and its health."""
    body = vlmservice(status.model_dump(mode="json", by_alias=True, exclude_none=True) if status else None,
                      generation=generation)  # fmt: skip
    body["spec"].update(resources={"accelerator": "cpu", "devicesPerReplica": 0}, engine={"name": "transformers"})
    pods = [
        {"metadata": {"name": f"rec-{i}", "annotations": {DIGEST_ANNOTATION: d}},
         "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
        for i, d in enumerate(served)
    ]  # fmt: skip
    deployment = {"status": {"replicas": len(served), "readyReplicas": len(served)}} if served else None
    observed = Observed(deployment=deployment, pods=pods, job=job)
    planned = plan_service(VLMService.model_validate(body), observed, NOW, SETTINGS).status
    body["status"] = planned.model_dump(mode="json", by_alias=True, exclude_none=True)
    return planned, health("VLMService", body)


def trained(digest: str) -> GRPOJob:
    checkpoint = {"uri": "pvc://runs/rec/ck", "step": 10, "digest": digest, "best": True}
    return job_model({"phase": "Running", "checkpoints": [checkpoint], "bestCheckpoint": checkpoint})


def test_vlmservice_statuses_from_the_planner() -> None:
    """Unresolved model, first rollout, ready, a new checkpoint rolling out: the statuses
    service_lifecycle.plan computes (the controller writes them), judged by the script."""
    status, verdict = service_step(None, None)
    assert verdict["status"] == "Progressing" and "GRPOJob ml/rec does not exist" in verdict["message"]
    status, verdict = service_step(status, trained(D1))
    assert verdict == {"status": "Progressing", "message": f"Progressing: 0/1 replica(s) ready on {D1}"}
    status, verdict = service_step(status, trained(D1), D1)
    assert verdict["status"] == "Healthy" and f"1/1 replica(s) ready on {D1}" in verdict["message"]
    status, verdict = service_step(status, trained(D2), D1)  # a better checkpoint: the Deployment rolls to it
    assert "still serving" in verdict["message"]
    status, verdict = service_step(status, trained(D2), D1, D2)
    assert verdict["status"] == "Progressing" and f"still serving {D1} (1)" in verdict["message"]
    status, verdict = service_step(status, trained(D2), D2)
    assert verdict["status"] == "Healthy"
    # Before the operator sees generation 4 the old status is not trusted.
    body = vlmservice(status.model_dump(mode="json", by_alias=True, exclude_none=True), generation=4)
    assert health("VLMService", body) == {
        "status": "Progressing",
        "message": "Waiting for the vlmr1 operator to reconcile generation 4 (status describes generation 3)",
    }


# --- The argocd-cm patch --------------------------------------------------------------------

PATCH_HEADER = """\
# Argo CD health checks of GRPOJob and VLMService, as a merge patch of Argo CD's argocd-cm:
#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file helm/vlmr1/argocd/argocd-cm-patch.yaml
# Generated from grpojob-health.lua and vlmservice-health.lua next to this file: edit those, then
#   VLMR1_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/chart/test_argocd_health.py
# The scripts use only the base and table libraries, so no useOpenLibs key is needed.
"""


def config_key(kind: str) -> str:
    return f"resource.customizations.health.vlmr1.io_{kind}"


def render_patch() -> str:
    lines = [PATCH_HEADER + "data:"]
    for kind, script in SCRIPTS.items():
        lines.append(f"  {config_key(kind)}: |")
        lines += [f"    {line}" if line else "" for line in script.read_text(encoding="utf-8").splitlines()]
    return "\n".join(lines) + "\n"


def test_argocd_cm_patch_is_generated_from_the_scripts(golden: Callable[[Path, str], None]) -> None:
    rendered = render_patch()
    patch = yaml.safe_load(rendered)
    assert patch == {"data": {config_key(kind): script.read_text(encoding="utf-8") for kind, script in SCRIPTS.items()}}
    golden(PATCH, rendered)
