"""Each cross-field rule's CEL expression (enforced by the API server) and its Python twin
(enforced by the loader and the operator) agree on every object hypothesis can build.

The CEL side is evaluated with cel-python on the camelCase dump of the object, which is
what the API server sees after defaulting (unset optionals absent, defaults filled in).
"""

from __future__ import annotations

from typing import Any

import celpy
import pytest
from celpy import celtypes
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from vlmr1_core.api.grpojob import GRPOJob, GRPOJobSpec, TrainingResources
from vlmr1_core.api.vlmservice import (
    AutoscalingSpec,
    EngineSpec,
    JobCheckpointRef,
    ReplicaRange,
    ServedModel,
    ServingResources,
    VLMServiceSpec,
)
from vlmr1_core.apimodel import ApiModel
from vlmr1_core.config import (
    FAMILY_PATTERNS,
    CheckpointSpec,
    DatasetSpec,
    EvalDatasetSpec,
    EvaluationSpec,
    FinetuningSpec,
    GrpoSpec,
    LoraSpec,
    ModelSpec,
    RewardCodeSpec,
    RewardSpec,
    RolloutSpec,
    TrainerConfig,
    TrainingSpec,
    VllmSpec,
)
from vlmr1_core.reward_config import RemoteRewardSpec

_env = celpy.Environment()
# Kubernetes' CEL string extension; cel-python lacks it.
_FUNCTIONS = {"lowerAscii": lambda s: celtypes.StringType(str(s).lower())}


def cel(rule: str, obj: BaseModel) -> bool:
    program = _env.program(_env.compile(rule), functions=_FUNCTIONS)
    data = obj.model_dump(mode="json", by_alias=True, exclude_none=True)
    return bool(program.evaluate({"self": celpy.json_to_cel(data)}))


def agree(obj: ApiModel) -> None:
    for rule, check in type(obj).__cel_checks__:
        assert check(obj) == cel(rule.rule, obj), f"{type(obj).__name__}: {rule.rule!r} disagrees on {obj!r}"


def build(cls: type[ApiModel], **values: Any) -> Any:
    """An instance without running validation, so objects that break the rules exist too."""
    return cls.model_construct(**{k: v for k, v in values.items() if v is not None})


small = st.integers(min_value=0, max_value=9)
pos = st.integers(min_value=1, max_value=9)
maybe = st.none


def test_every_rule_bearing_model_is_covered() -> None:
    covered = {
        ModelSpec, FinetuningSpec, GrpoSpec, TrainingSpec, RolloutSpec, TrainerConfig, TrainingResources,
        EvaluationSpec, GRPOJobSpec, ServedModel, ReplicaRange, ServingResources, VLMServiceSpec, RewardSpec,
        RewardCodeSpec,
    }  # fmt: skip
    with_rules = {cls for cls in _all_models() if cls.__cel_checks__}
    assert with_rules <= covered, f"add a hypothesis test for {with_rules - covered}"


def _all_models() -> set[type[ApiModel]]:
    seen: set[type[ApiModel]] = set()
    todo: list[type[ApiModel]] = [GRPOJob, *_service_roots()]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        for field in cls.model_fields.values():
            for sub in _models_in(field.annotation):
                todo.append(sub)
    return seen


def _service_roots() -> list[type[ApiModel]]:
    from vlmr1_core.api.vlmservice import VLMService

    return [VLMService]


def _models_in(annotation: Any) -> list[type[ApiModel]]:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, ApiModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


uris = st.sampled_from(
    [
        "hf://Qwen/Qwen2.5-VL-3B",
        "builtin://tiny-QWEN2_5_VL",
        "/m/InternVL3",
        "pvc://m/custom",
        "org/name",
        "Qwen/Qwen3-VL-8B-Instruct",
        "zai-org/GLM-4.1V-9B-Thinking",
        "Qwen/Qwen3.5-2B",
    ]
)


@given(uri=uris, family=st.none() | st.sampled_from(sorted(FAMILY_PATTERNS)), lo=pos, hi=pos)
def test_model_rules(uri: str, family: str | None, lo: int, hi: int) -> None:
    agree(build(ModelSpec, uri=uri, family=family, min_pixels=lo * 1000, max_pixels=hi * 1000))


@given(
    name=st.sampled_from(["judge", "rec_iou", "mypkg.rewards:exact", "m:Cls"]),
    remote=st.booleans(),
)
def test_reward_rules(name: str, remote: bool) -> None:
    agree(build(RewardSpec, name=name, remote=RemoteRewardSpec(url="http://j:8000/score") if remote else None))


@given(
    config_map=st.none() | st.just("my-rewards"),
    uri=st.none() | st.sampled_from(["./rewards", "pvc://code/rewards", "s3://b/rewards", "hf://org/x"]),
)
def test_reward_code_rules(config_map: str | None, uri: str | None) -> None:
    agree(build(RewardCodeSpec, config_map=config_map, uri=uri))


@given(mode=st.sampled_from(["full", "lora", "freezeVision"]), lora=st.booleans())
def test_finetuning_rules(mode: str, lora: bool) -> None:
    agree(build(FinetuningSpec, mode=mode, lora=LoraSpec() if lora else None))


@given(eps=st.floats(0.01, 0.9), high=st.none() | st.floats(0.01, 0.9))
def test_grpo_rules(eps: float, high: float | None) -> None:
    agree(build(GrpoSpec, epsilon=eps, epsilon_high=high))


@given(steps=st.none() | pos, epochs=st.none() | st.floats(0.5, 3))
def test_training_rules(steps: int | None, epochs: float | None) -> None:
    agree(build(TrainingSpec, max_steps=steps, num_epochs=epochs))


@given(
    engine=st.sampled_from(["hf", "vllmColocate", "vllmServer"]),
    vllm=st.sampled_from([None, "no-url", "url"]),
)
def test_rollout_rules(engine: str, vllm: str | None) -> None:
    spec = None if vllm is None else VllmSpec(server_url="http://v:8000" if vllm == "url" else None)
    agree(build(RolloutSpec, engine=engine, vllm=spec))


@given(
    task=st.sampled_from(["rec", "ovd", "math", "gui", "mcq", "custom"]),
    n=st.integers(0, 2),
    method=st.sampled_from(["grpo", "sft"]),
    best=st.sampled_from(["reward", "rewards/mcq/mean", "loss", "kl"]),
)
def test_trainer_config_rules(task: str, n: int, method: str, best: str) -> None:
    agree(
        build(
            TrainerConfig,
            method=method,
            model=ModelSpec(uri="hf://Qwen/Qwen2.5-VL-3B"),
            task=task,
            datasets=[DatasetSpec(jsonl="a.jsonl")],
            rewards=[RewardSpec(name="format")] * n,
            checkpoint=CheckpointSpec(best_metric=best),
        )
    )


eval_names = st.sampled_from(["val", "test", "v.1"])


@given(names=st.lists(eval_names, min_size=1, max_size=4))
def test_evaluation_rules(names: list[str]) -> None:
    agree(build(EvaluationSpec, datasets=[EvalDatasetSpec(name=n, jsonl="v.jsonl") for n in names]))


@given(
    task=st.sampled_from(["rec", "custom"]),
    eval_tasks=st.none() | st.lists(st.sampled_from([None, "ovd"]), min_size=1, max_size=2),
    best=st.sampled_from(
        ["reward", "eval/val/rec_acc", "eval/val/ap50", "eval/test/rec_acc", "eval/val/loss", "eval/val", "evalx"]
    ),
)
def test_evaluation_cross_rules(task: str, eval_tasks: list[str | None] | None, best: str) -> None:
    evaluation = None
    if eval_tasks is not None:
        datasets = [
            EvalDatasetSpec(name=f"val{'' if i == 0 else i}", jsonl="v.jsonl", task=t) for i, t in enumerate(eval_tasks)
        ]
        evaluation = EvaluationSpec(datasets=datasets)
    agree(
        build(
            TrainerConfig,
            model=ModelSpec(uri="hf://Qwen/Qwen2.5-VL-3B"),
            task=task,
            datasets=[DatasetSpec(jsonl="a.jsonl")],
            rewards=[RewardSpec(name="format")],
            checkpoint=CheckpointSpec(best_metric=best),
            evaluation=evaluation,
        )
    )


@given(accel=st.sampled_from(["nvidia", "ascend", "cpu"]), procs=pos, devices=st.none() | pos)
def test_training_resources_rules(accel: str, procs: int, devices: int | None) -> None:
    agree(build(TrainingResources, accelerator=accel, processes_per_node=procs, devices_per_node=devices))


@given(batch=pos, accum=pos, nodes=pos, procs=pos, gens=st.integers(2, 16))
@settings(max_examples=200)
def test_generation_batch_rule(batch: int, accum: int, nodes: int, procs: int, gens: int) -> None:
    for method in ("grpo", "sft"):
        agree(_batch_spec(method, batch, accum, nodes, procs, gens))


def _batch_spec(method: str, batch: int, accum: int, nodes: int, procs: int, gens: int) -> GRPOJobSpec:
    return build(
        GRPOJobSpec,
        method=method,
        model=ModelSpec(uri="hf://Qwen/Qwen2.5-VL-3B"),
        datasets=[DatasetSpec(jsonl="a.jsonl")],
        training=TrainingSpec(per_device_batch_size=batch, gradient_accumulation_steps=accum),
        resources=TrainingResources(nodes=nodes, processes_per_node=procs),
        grpo=GrpoSpec(num_generations=gens),
    )


@given(uri=st.booleans(), digest=st.booleans(), job=st.booleans())
def test_served_model_rules(uri: bool, digest: bool, job: bool) -> None:
    agree(
        build(
            ServedModel,
            uri="pvc://c/p" if uri else None,
            digest="sha256:" + "0" * 64 if digest else None,
            from_job=JobCheckpointRef(name="j") if job else None,
        )
    )


@given(lo=small, hi=small, count=st.none() | small)
def test_replica_rules(lo: int, hi: int, count: int | None) -> None:
    agree(build(ReplicaRange, min=lo, max=hi, count=count))


@given(accel=st.sampled_from(["nvidia", "ascend", "ascend310p", "cpu"]), devices=small)
def test_serving_resources_rules(accel: str, devices: int) -> None:
    agree(build(ServingResources, accelerator=accel, devices_per_replica=devices))


dtypes = st.none() | st.sampled_from(["auto", "bfloat16", "float16", "float32"])
extra_args = st.lists(st.sampled_from(["--dtype", "--dtype=bfloat16", "bfloat16", "--seed", "--dtypes"]), max_size=3)


@given(
    engine=st.sampled_from(["vllm", "xllm", "vllm-ascend", "transformers"]),
    accel=st.sampled_from(["nvidia", "ascend", "ascend310p", "cpu"]),
    tp=pos,
    devices=small,
    autoscaling=st.booleans(),
    lo=small,
    hi=pos,
    dtype=dtypes,
    extra=extra_args,
    max_len=st.none() | st.integers(16, 32768),
)
@settings(max_examples=300)
def test_service_rules(
    engine: str,
    accel: str,
    tp: int,
    devices: int,
    autoscaling: bool,
    lo: int,
    hi: int,
    dtype: str | None,
    extra: list[str],
    max_len: int | None,
) -> None:
    agree(
        build(
            VLMServiceSpec,
            model=ServedModel(uri="pvc://c/p", digest="sha256:" + "0" * 64),
            engine=build(
                EngineSpec, name=engine, tensor_parallel_size=tp, dtype=dtype, extra_args=extra, max_model_len=max_len
            ),
            resources=build(ServingResources, accelerator=accel, devices_per_replica=devices),
            replicas=build(ReplicaRange, min=lo, max=hi),
            autoscaling=AutoscalingSpec(target_tokens_per_second_per_replica=100) if autoscaling else None,
        )
    )


@pytest.mark.parametrize("rule", ["self.min <= self.max"])
def test_cel_evaluator_catches_a_broken_rule(rule: str) -> None:
    """The harness itself can tell disagreement apart (so the tests above are not vacuous)."""
    assert cel(rule, build(ReplicaRange, min=1, max=2)) is True
    assert cel(rule, build(ReplicaRange, min=3, max=2)) is False
