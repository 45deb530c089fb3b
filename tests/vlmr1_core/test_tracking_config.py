"""training.reportTo / project / runName and secrets.tracking: the spec's experiment-tracking fields."""

from __future__ import annotations

import celpy
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from vlmr1_core.api.grpojob import GRPOJob
from vlmr1_core.config import Tracker, TrainingSpec

TRACKERS: list[Tracker] = ["tensorboard", "mlflow", "wandb", "trackio"]


def test_no_tracker_by_default() -> None:
    assert TrainingSpec().report_to == []


def test_trackers_are_transformers_report_to_names() -> None:
    spec = TrainingSpec.model_validate({"reportTo": ["tensorboard", "wandb"], "project": "p", "runName": "r"})
    assert (spec.report_to, spec.project, spec.run_name) == (["tensorboard", "wandb"], "p", "r")
    with pytest.raises(ValidationError) as info:
        TrainingSpec.model_validate({"reportTo": ["comet_ml"]})
    assert "'tensorboard', 'mlflow', 'wandb' or 'trackio'" in str(info.value)


def test_a_tracker_named_twice_is_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        TrainingSpec.model_validate({"reportTo": ["mlflow", "mlflow"]})
    assert "reportTo names a tracker twice" in str(info.value)


@given(st.lists(st.sampled_from(TRACKERS), max_size=4))
def test_the_cel_rule_and_python_agree_on_duplicates(trackers: list[Tracker]) -> None:
    spec = TrainingSpec.model_construct(report_to=trackers)
    ((rule, check),) = [(r, c) for r, c in TrainingSpec.__cel_checks__ if "reportTo" in r.rule]
    env = celpy.Environment()
    program = env.program(env.compile(rule.rule))
    data = celpy.json_to_cel(  # type: ignore[attr-defined]  # celpy re-exports it untyped
        spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    )
    assert bool(program.evaluate({"self": data})) == check(spec) == (len(set(trackers)) == len(trackers))


def test_tracking_secret_is_a_reference() -> None:
    job = GRPOJob.model_validate(
        {
            "apiVersion": "vlmr1.io/v1alpha1",
            "kind": "GRPOJob",
            "metadata": {"name": "j"},
            "spec": {
                "model": {"uri": "hf://Qwen/Qwen2.5-VL-3B-Instruct"},
                "datasets": [{"jsonl": "pvc://data/train.jsonl"}],
                "training": {"reportTo": ["mlflow"]},
                "secrets": {"tracking": {"name": "mlflow-credentials"}},
            },
        }
    )
    assert job.spec.secrets is not None and job.spec.secrets.tracking is not None
    assert job.spec.secrets.tracking.name == "mlflow-credentials"
