"""GRPOJob pods carry what experiment tracking needs: the tracking Secret as environment (next to
the object-store one) and the job's namespace, which names the run with VLMR1_JOB_NAME."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmr1_core.api.grpojob import GRPOJob
from vlmr1_core.api.manifest import load_manifest
from vlmr1_operator.builders import build_grpojob
from vlmr1_operator.builders.common import merge
from vlmr1_operator.settings import OperatorSettings

REPO = Path(__file__).resolve().parents[2]


def pods(path: Path, namespace: str = "research", **spec: Any) -> list[dict[str, Any]]:
    job = load_manifest(path, GRPOJob)
    assert isinstance(job, GRPOJob)
    data = job.model_dump(by_alias=True, exclude_none=True)
    data["metadata"] |= {"uid": "uid-1", "namespace": namespace}
    data["spec"] = merge(data["spec"], spec)
    return [o for o in build_grpojob(GRPOJob.model_validate(data), OperatorSettings()) if o["kind"] == "Pod"]


def env(pod: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in pod["spec"]["containers"][0]["env"]}


def test_tracking_secret_joins_the_object_store_secret_on_every_pod() -> None:
    # grpojob-ovd.yaml reads s3:// data with secrets.objectStore (s3-credentials).
    built = pods(REPO / "examples" / "grpojob-ovd.yaml", training={"reportTo": ["mlflow"]},
                 secrets={"tracking": {"name": "mlflow-credentials"}})  # fmt: skip
    assert built
    for pod in built:
        assert pod["spec"]["containers"][0]["envFrom"] == [
            {"secretRef": {"name": "s3-credentials"}},
            {"secretRef": {"name": "mlflow-credentials"}},
        ]


def test_tracking_secret_alone() -> None:
    (pod,) = pods(REPO / "examples" / "grpojob-rec-local.yaml", secrets={"tracking": {"name": "wandb"}})
    assert pod["spec"]["containers"][0]["envFrom"] == [{"secretRef": {"name": "wandb"}}]


def test_no_secret_no_env_from() -> None:
    (pod,) = pods(REPO / "examples" / "grpojob-rec-local.yaml")
    assert "envFrom" not in pod["spec"]["containers"][0]


def test_pods_know_their_job_and_namespace() -> None:
    job = load_manifest(REPO / "examples" / "grpojob-ovd.yaml", GRPOJob)
    for pod in pods(REPO / "examples" / "grpojob-ovd.yaml", namespace="team-a"):
        values = env(pod)
        assert (values["VLMR1_JOB_NAME"], values["VLMR1_NAMESPACE"]) == (job.metadata.name, "team-a")
