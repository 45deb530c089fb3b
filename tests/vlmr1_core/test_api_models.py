"""Defaults, derived values and cross-field rules of the API models."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from vlmr1_core.api import GRPOJobSpec, VLMServiceSpec
from vlmr1_core.config import DEFAULT_MAX_COMPLETION_LENGTH, TrainerConfig, detect_family

MINIMAL_JOB: dict[str, Any] = {
    "model": {"uri": "hf://Qwen/Qwen2.5-VL-3B-Instruct"},
    "datasets": [{"jsonl": "pvc://data/train.jsonl"}],
}


def job(**overrides: Any) -> GRPOJobSpec:
    return GRPOJobSpec.model_validate({**MINIMAL_JOB, **overrides})


def test_minimal_job_is_valid_with_vlm_r1_defaults() -> None:
    spec = job()
    assert spec.task == "rec"
    assert (spec.grpo.num_generations, spec.grpo.beta, spec.grpo.epsilon) == (8, 0.04, 0.2)
    assert spec.grpo.loss_type == "grpo"
    assert spec.training.learning_rate == 1e-6
    assert spec.training.resolved_num_epochs == 2.0
    assert spec.resources.accelerator == "nvidia"
    assert spec.run_policy.backoff_limit == 3


@pytest.mark.parametrize(
    ("task", "rewards"),
    [
        ("rec", ["rec_iou", "rec_format"]),
        ("ovd", ["od_length", "format"]),
        ("math", ["math", "format"]),
        ("gui", ["all_match", "format"]),
    ],
)
def test_task_defaults_fill_rewards_and_completion_budget(task: str, rewards: list[str]) -> None:
    spec = job(task=task)
    assert [r.name for r in spec.rewards] == rewards
    assert spec.grpo.max_completion_length == DEFAULT_MAX_COMPLETION_LENGTH[task]  # type: ignore[index]


def test_explicit_rewards_and_budget_are_kept() -> None:
    spec = job(task="ovd", rewards=[{"name": "od_ap", "weight": 2}], grpo={"maxCompletionLength": 77})
    assert [(r.name, r.weight) for r in spec.rewards] == [("od_ap", 2.0)]
    assert spec.grpo.max_completion_length == 77


@pytest.mark.parametrize(
    ("uri", "family"),
    [
        ("hf://Qwen/Qwen2.5-VL-7B-Instruct", "qwen2.5-vl"),
        ("builtin://tiny-qwen2.5-vl", "qwen2.5-vl"),
        ("/models/qwen2_5_vl_3b", "qwen2.5-vl"),
        ("OpenGVLab/InternVL3-2B-hf", "internvl"),
        ("pvc://models/my-model", None),
    ],
)
def test_family_detection(uri: str, family: str | None) -> None:
    assert detect_family(uri) == family


def test_lora_defaults_apply_only_in_lora_mode() -> None:
    assert job().finetuning.resolved_lora is None
    lora = job(finetuning={"mode": "lora"}).finetuning.resolved_lora
    assert lora is not None
    assert (lora.r, lora.alpha, lora.dropout) == (64, 128, 0.05)


def test_generation_batch_size_counts_the_whole_gang() -> None:
    spec = job(
        training={"perDeviceBatchSize": 2, "gradientAccumulationSteps": 3},
        resources={"nodes": 2, "processesPerNode": 4},
        grpo={"numGenerations": 12},
    )
    assert spec.generation_batch_size == 2 * 2 * 4 * 3


def test_devices_default_to_one_per_process_and_zero_on_cpu() -> None:
    assert job(resources={"processesPerNode": 4}).resources.resolved_devices_per_node == 4
    assert job(resources={"accelerator": "cpu", "processesPerNode": 2}).resources.resolved_devices_per_node == 0


def test_snake_case_names_are_accepted_too() -> None:
    spec = job(grpo={"num_generations": 4})
    assert spec.grpo.num_generations == 4


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(ValidationError, match="numGeneration"):
        job(grpo={"numGeneration": 4})


def test_trainer_view_drops_kubernetes_fields_and_keeps_the_rest() -> None:
    spec = job(resources={"nodes": 2}, runPolicy={"suspend": True})
    view = spec.trainer_view()
    assert type(view) is TrainerConfig
    assert "resources" not in view.to_yaml_dict()
    assert view.to_yaml_dict() == {
        k: v for k, v in spec.to_yaml_dict().items() if k not in {"resources", "runPolicy", "secrets", "podTemplate"}
    }


def test_service_defaults() -> None:
    spec = VLMServiceSpec.model_validate({"model": {"uri": "pvc://c/ckpt", "digest": "sha256:" + "a" * 64}})
    assert (spec.engine.name, spec.resources.accelerator, spec.resources.devices_per_replica) == ("vllm", "nvidia", 1)
    assert (spec.replicas.min, spec.replicas.max, spec.replicas.count) == (1, 1, None)
    assert spec.autoscaling is None


def test_engine_args_accept_scalars_only() -> None:
    base = {"model": {"uri": "pvc://c/ckpt", "digest": "sha256:" + "a" * 64}}
    ok = VLMServiceSpec.model_validate({**base, "engine": {"args": {"max-num-seqs": 8, "enforce-eager": True}}})
    assert ok.engine.args == {"max-num-seqs": 8, "enforce-eager": True}
    with pytest.raises(ValidationError):
        VLMServiceSpec.model_validate({**base, "engine": {"args": {"max-num-seqs": [1, 2]}}})


def test_trainer_config_imports_only_pydantic() -> None:
    """The operator image has no trainer extras: vlmr1_core.config must not pull them in."""
    code = (
        "import sys; import vlmr1_core.config; "
        "heavy = {'torch', 'transformers', 'trl', 'peft', 'numpy', 'yaml', 'kopf', 'kubernetes'}; "
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
