"""TrainerConfig -> GRPOConfig, DeepSpeed and peft settings (no training: fast, exact)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from trl.trainer.grpo_config import GRPOConfig

from vlmr1_core.config import TrainerConfig
from vlmr1_trainer.train import (
    RunOptions,
    deepspeed_config,
    grpo_args,
    grpo_kwargs,
    require_torch_npu,
    reward_functions,
)


def cfg(**overrides: Any) -> TrainerConfig:
    return TrainerConfig.model_validate(
        {"model": {"uri": "hf://Qwen/Qwen2.5-VL-3B-Instruct"}, "datasets": [{"jsonl": "a.jsonl"}], **overrides}
    )


def args(config: TrainerConfig, **options: Any) -> Any:
    """The GRPOConfig arguments (GRPOConfig itself refuses bf16 on this CPU-only machine)."""
    kwargs = grpo_kwargs(config, RunOptions(output_dir=Path("/tmp/vlmr1-test-out"), **options))
    unknown = set(kwargs) - {f.name for f in dataclasses.fields(GRPOConfig)}
    assert not unknown, f"GRPOConfig has no {unknown}"
    return SimpleNamespace(**kwargs)


def test_cpu_config_is_accepted_by_trl() -> None:
    real = grpo_args(cfg(grpo={"numGenerations": 4}), RunOptions(output_dir=Path("/tmp/vlmr1-test-out")))
    assert real.num_generations == 4 and real.use_cpu


def test_grpo_fields_are_mapped() -> None:
    config = cfg(
        grpo={
            "numGenerations": 16, "beta": 0.0, "epsilon": 0.2, "epsilonHigh": 0.28, "lossType": "dapo",
            "importanceSamplingLevel": "sequence", "scaleRewards": "none", "temperature": 0.7, "topP": 0.95,
            "numIterations": 2, "maxCompletionLength": 300,
        },
        training={"learningRate": 3e-6, "maxSteps": 50, "perDeviceBatchSize": 4, "gradientAccumulationSteps": 4,
                  "seed": 7, "saveSteps": 25, "loggingSteps": 5, "gradientCheckpointing": True},
        rewards=[{"name": "math", "weight": 1.0}, {"name": "format", "weight": 0.5}],
    )  # fmt: skip
    a = args(config, accelerator="nvidia")
    assert (a.num_generations, a.beta, a.epsilon, a.epsilon_high) == (16, 0.0, 0.2, 0.28)
    assert (a.loss_type, a.importance_sampling_level, a.scale_rewards) == ("dapo", "sequence", "none")
    assert (a.temperature, a.top_p, a.num_iterations, a.max_completion_length) == (0.7, 0.95, 2, 300)
    assert (a.learning_rate, a.max_steps, a.per_device_train_batch_size, a.gradient_accumulation_steps) == (
        3e-6, 50, 4, 4,
    )  # fmt: skip
    assert (a.seed, a.save_steps, a.logging_steps) == (7, 25, 5)
    assert a.reward_weights == [1.0, 0.5]
    assert a.bf16 and not a.use_cpu
    assert a.remove_unused_columns is False
    assert a.save_total_limit is None  # our pruning keeps the best checkpoint; transformers' would not


def test_temperature_is_honoured_not_defaulted() -> None:
    """VLM-R1 ignores its temperature setting; we pass it to generation."""
    assert args(cfg(grpo={"temperature": 0.3})).temperature == 0.3


def test_epochs_apply_when_no_max_steps() -> None:
    a = args(cfg())
    assert (a.max_steps, a.num_train_epochs) == (-1, 2.0)
    assert args(cfg(), max_steps=3).max_steps == 3


def test_cpu_trains_in_fp32_without_a_backend() -> None:
    a = args(cfg(), accelerator="cpu")
    assert a.use_cpu and not a.bf16 and not a.fp16
    assert a.ddp_backend is None
    assert args(cfg(), accelerator="cpu", world_size=2).ddp_backend == "gloo"
    assert args(cfg(), accelerator="nvidia", world_size=8).ddp_backend == "nccl"


@pytest.mark.parametrize(
    ("rollout", "expected"),
    [
        ({"engine": "hf"}, {"use_vllm": False}),
        (
            {"engine": "vllmColocate", "vllm": {"gpuMemoryUtilization": 0.4, "tensorParallelSize": 2}},
            {"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.4,
             "vllm_tensor_parallel_size": 2},
        ),
        (
            {"engine": "vllmServer", "vllm": {"serverUrl": "http://vllm.ns.svc:8000"}},
            {"use_vllm": True, "vllm_mode": "server", "vllm_server_base_url": "http://vllm.ns.svc:8000"},
        ),
    ],
)  # fmt: skip
def test_rollout_engines(rollout: dict[str, Any], expected: dict[str, Any]) -> None:
    a = args(cfg(rollout=rollout), accelerator="nvidia")
    assert {k: getattr(a, k) for k in expected} == expected


def test_deepspeed_zero_configs() -> None:
    assert deepspeed_config(cfg(), "nvidia") is None
    assert deepspeed_config(cfg(training={"zeroStage": 3}), "cpu") is None
    zero2 = deepspeed_config(cfg(training={"zeroStage": 2}), "nvidia")
    assert zero2 is not None and zero2["zero_optimization"]["stage"] == 2
    assert "stage3_gather_16bit_weights_on_model_save" not in zero2["zero_optimization"]
    zero3 = deepspeed_config(cfg(training={"zeroStage": 3, "precision": "fp16"}), "ascend")
    assert zero3 is not None
    assert zero3["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert (zero3["bf16"]["enabled"], zero3["fp16"]["enabled"]) == (False, True)
    assert args(cfg(training={"zeroStage": 3}), accelerator="nvidia").deepspeed is not None


def test_rewards_are_built_with_params_and_weights() -> None:
    funcs, weights = reward_functions(cfg(rewards=[{"name": "rec_acc", "weight": 3, "params": {"threshold": 0.7}}]))
    assert [f.__name__ for f in funcs] == ["rec_acc"]
    assert funcs[0].params()["threshold"] == 0.7
    assert weights == [3.0]


def test_ascend_without_torch_npu_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="accelerator ascend needs torch_npu"):
        require_torch_npu()
