"""TrainerConfig -> a configured TRL GRPOTrainer, and one training run.

TRL's GRPOTrainer does the algorithm; this module only translates the spec into its
arguments (GRPOConfig, reward callables and weights, a peft LoraConfig, a DeepSpeed
config) and adds what VLM-R1 users need around it: atomic verifiable checkpoints
(transformers saves into a staging folder, then the checkpoint is moved into place
with its manifest), pruning that never drops the best checkpoint, resume from the
newest verified checkpoint, and the box-rescale columns of the model family.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlmr1_core.accelerators import DIST_BACKEND, Accelerator, torch_device
from vlmr1_core.checkpoints import CHECKPOINTS, CheckpointInfo, find_resumable, prune, save_checkpoint
from vlmr1_core.config import TrainerConfig
from vlmr1_core.errors import UserError
from vlmr1_trainer.data import BadSampleError, LoadReport, Sample

if TYPE_CHECKING:
    from transformers import TrainerCallback
    from trl.trainer.grpo_config import GRPOConfig
    from trl.trainer.grpo_trainer import GRPOTrainer
    from trl.trainer.sft_trainer import SFTTrainer

    from vlmr1_trainer.preflight import CheckedInputs
    from vlmr1_trainer.progress.curve import Curves
    from vlmr1_trainer.rewards.setup import JobReward
    from vlmr1_trainer.vlm import LoadedVLM, VLMFamily

log = logging.getLogger(__name__)

STAGING = "staging"
EVALUATION = "evaluation"
"""Folder inside a checkpoint holding its evaluation results (metrics.json, <set>.samples.jsonl)."""
START_EVALUATION = "start-evaluation"
"""Folder in the run holding the starting model's evaluation results (evaluation.onStart)."""


@dataclass
class RunOptions:
    """How one training process runs a TrainerConfig (not part of the spec)."""

    output_dir: Path
    """Run folder: checkpoints/, metrics.jsonl, staging/ (transformers' own saves)."""
    accelerator: Accelerator = "cpu"
    world_size: int = 1
    """Processes in the run (the torchrun WORLD_SIZE the launcher set)."""
    max_steps: int | None = None
    """Overrides training.maxSteps (a quick local run of a production spec)."""
    resume: bool = True
    """Continue from the newest verified checkpoint in output_dir/checkpoints."""
    checkpoint_uri: str | None = None
    """Base uri recorded for each checkpoint (status and VLMService refer to it)."""
    callbacks: list[TrainerCallback] = field(default_factory=list)
    """Extra transformers callbacks (progress reporting, a progress bar)."""
    on_checkpoint: Callable[[CheckpointInfo], None] | None = None
    """Called on rank 0 with every saved checkpoint."""
    on_start_evaluation: Callable[[str, dict[str, float]], None] | None = None
    """Called on rank 0 with the starting model's uri and metrics (evaluation.onStart)."""
    debug: bool = False
    """VLM-R1's DEBUG_MODE: rank 0 dumps sampled completions and their rewards."""
    rank: int = 0
    """This process's global rank."""
    job_name: str | None = None
    """The job's name, which names the run in the trackers (unset: $VLMR1_JOB_NAME, else the run folder's name)."""
    namespace: str | None = None
    """The job's namespace, recorded with the run in the trackers (unset: $VLMR1_NAMESPACE)."""


@dataclass
class TrainResult:
    """What a run did, for the closing summary and tests."""

    steps: int
    checkpoints: list[CheckpointInfo]
    resumed_from: CheckpointInfo | None
    data_report: LoadReport
    log_history: list[dict[str, Any]]
    start_metrics: dict[str, float] = field(default_factory=dict)
    """The starting model's evaluation metrics (evaluation.onStart; empty otherwise)."""
    curves: Curves | None = None
    """The whole run's curves from metrics.jsonl, resumed parts included (rank 0)."""
    curve_file: Path | None = None
    """reward_curve.png, when it was drawn."""


def reward_functions(config: TrainerConfig) -> tuple[list[JobReward], list[float]]:
    """The configured rewards as TRL callables, with their weights (a UserError naming the
    spec field for an unknown name or parameter)."""
    from vlmr1_trainer.preflight import check_rewards

    return check_rewards(config), [spec.weight for spec in config.rewards]


def deepspeed_config(config: TrainerConfig, accelerator: Accelerator) -> dict[str, Any] | None:
    """A DeepSpeed ZeRO config from the spec, "auto" where transformers fills values in.

    Stage 3 gathers 16-bit weights on save so a checkpoint is a loadable model folder, as
    VLM-R1's zero3.json does. None without a ZeRO stage, and always on CPU (no DeepSpeed).
    """
    stage = config.training.zero_stage
    if stage is None or accelerator == "cpu":
        return None
    zero: dict[str, Any] = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True}
    if stage == 3:
        zero |= {"stage3_gather_16bit_weights_on_model_save": True, "stage3_prefetch_bucket_size": "auto"}
    precision = config.training.precision
    return {
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16"},
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
    }


def grpo_args(config: TrainerConfig, options: RunOptions) -> GRPOConfig:
    """TRL's GRPOConfig for the spec (it checks the device: bf16 needs an accelerator)."""
    from trl.trainer.grpo_config import GRPOConfig

    return GRPOConfig(**grpo_kwargs(config, options))


def grpo_kwargs(config: TrainerConfig, options: RunOptions) -> dict[str, Any]:
    """GRPOConfig's arguments for the spec: every GRPO and training field mapped, none guessed."""
    grpo, rollout = config.grpo, config.rollout
    vllm = rollout.vllm
    kwargs: dict[str, Any] = {
        **training_kwargs(config, options),
        "num_generations": grpo.num_generations,
        "beta": grpo.beta,
        "epsilon": grpo.epsilon,
        "epsilon_high": grpo.epsilon_high,
        "loss_type": grpo.loss_type,
        "importance_sampling_level": grpo.importance_sampling_level,
        "scale_rewards": grpo.scale_rewards,
        "temperature": grpo.temperature,
        "top_p": grpo.top_p,
        "num_iterations": grpo.num_iterations,
        "max_completion_length": grpo.max_completion_length,
        "reward_weights": [spec.weight for spec in config.rewards],
        "use_vllm": rollout.engine != "hf",
    }
    if rollout.engine != "hf":
        kwargs["vllm_mode"] = "colocate" if rollout.engine == "vllmColocate" else "server"
        if vllm is not None:
            kwargs["vllm_gpu_memory_utilization"] = vllm.gpu_memory_utilization
            kwargs["vllm_tensor_parallel_size"] = vllm.tensor_parallel_size
            if vllm.server_url:
                kwargs["vllm_server_base_url"] = vllm.server_url
    return kwargs


def training_kwargs(config: TrainerConfig, options: RunOptions) -> dict[str, Any]:
    """The transformers TrainingArguments both methods share: optimisation, schedule, intervals,
    precision, distribution, and the staging folder checkpoints are first written to."""
    training = config.training
    on_cpu = options.accelerator == "cpu"
    max_steps = options.max_steps or training.max_steps
    return {
        "output_dir": str(options.output_dir / STAGING),
        "learning_rate": training.learning_rate,
        "lr_scheduler_type": training.lr_scheduler,
        "warmup_steps": training.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio
        "max_steps": max_steps if max_steps is not None else -1,
        "num_train_epochs": training.resolved_num_epochs,
        "per_device_train_batch_size": training.per_device_batch_size,
        "gradient_accumulation_steps": training.gradient_accumulation_steps,
        "activation_checkpointing": training.gradient_checkpointing,
        "max_grad_norm": training.max_grad_norm,
        "seed": training.seed,
        "logging_steps": training.logging_steps,
        "save_strategy": "steps",
        "save_steps": training.save_steps,
        "save_total_limit": None,  # pruning is ours: it keeps the best checkpoint
        "use_cpu": on_cpu,
        "bf16": not on_cpu and training.precision == "bf16",
        "fp16": not on_cpu and training.precision == "fp16",
        # Only when distributed: a backend set in a single process makes accelerate expect a process group.
        "ddp_backend": DIST_BACKEND[options.accelerator] if options.world_size > 1 else None,
        "deepspeed": deepspeed_config(config, options.accelerator),
        "remove_unused_columns": False,  # the rewards read solution, image_size, ...; SFT its target
        **tracking_arguments(config, options),
        "disable_tqdm": True,
    }


def tracking_arguments(config: TrainerConfig, options: RunOptions) -> dict[str, Any]:
    """report_to, run_name and project for the spec (:mod:`vlmr1_trainer.tracking`)."""
    from vlmr1_trainer import tracking

    identity = tracking.job_identity(options.output_dir, options.job_name, options.namespace)
    return tracking.training_arguments(config, identity)


def torch_dtype(config: TrainerConfig, accelerator: Accelerator) -> Any:
    """Weights in the training precision on accelerators; fp32 on CPU (no fast bf16 there)."""
    import torch

    if accelerator == "cpu":
        return torch.float32
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[config.training.precision]


class FamilyRowHook:
    """Adds the family's box columns to each row and enforces grpo.maxPromptLength.

    A class, not a closure, so the dataset stays picklable for dataloader workers.
    """

    def __init__(self, family: VLMFamily, processor: Any, max_prompt_length: int | None) -> None:
        self.family, self.processor, self.max_prompt_length = family, processor, max_prompt_length

    def __call__(self, sample: Sample, images: list[Any], row: dict[str, Any]) -> dict[str, Any]:
        columns = self.family.dataset_columns([im.size for im in images], self.processor, sample.image_size)
        if self.max_prompt_length is not None:
            length = self.prompt_tokens(row["prompt"], images)
            if length > self.max_prompt_length:
                raise BadSampleError(
                    sample.source,
                    sample.line,
                    f"prompt has {length} tokens (images included), over grpo.maxPromptLength "
                    f"{self.max_prompt_length}; raise the limit or shrink model.maxPixels",
                )
        return columns

    def prompt_tokens(self, prompt: list[dict[str, Any]], images: list[Any]) -> int:
        text = self.processor.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        encoded = self.processor(text=[text], images=images or None, return_tensors="np")
        return int(encoded["input_ids"].shape[-1])


class CheckpointCallback:
    """Turns each transformers save into an atomic, verifiable vlmr1 checkpoint (rank 0).

    transformers writes checkpoint-<step> into the staging folder (model, optimizer,
    scheduler, RNG and trainer state, so resume is exact); the files are then moved into a
    temporary folder next to the final one, the manifest is written and the folder renamed.
    """

    def __init__(self, config: TrainerConfig, options: RunOptions) -> None:
        self.config, self.options = config, options
        self.saved: list[CheckpointInfo] = []

    def as_callback(self) -> TrainerCallback:
        from transformers import TrainerCallback

        outer = self

        class _Callback(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
                # Always save the last step, whatever saveSteps says: a run's result is a checkpoint.
                if state.max_steps and state.global_step >= state.max_steps:
                    control.should_save = True
                return control

            def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
                outer.finalize(state)
                return control

        return _Callback()

    def finalize(self, state: Any) -> None:
        _barrier()  # every rank's shards (ZeRO) are on disk before rank 0 moves them
        if state.is_world_process_zero:
            step = int(state.global_step)
            staged = self.options.output_dir / STAGING / f"checkpoint-{step}"
            info = save_checkpoint(
                self.options.output_dir / CHECKPOINTS,
                step,
                lambda dest: _move_contents(staged, dest),
                metrics=latest_metrics(state.log_history),
                config=self.config,
                uri=self.options.checkpoint_uri,
                evaluate=self.evaluate if self.config.evaluation else None,
            )
            shutil.rmtree(staged, ignore_errors=True)
            self.saved.append(info)
            best = self.config.checkpoint
            if best.keep:
                prune(
                    self.options.output_dir / CHECKPOINTS,
                    best.keep,
                    best_metric=best.best_metric,
                    greater_is_better=best.greater_is_better,
                )
            if self.options.on_checkpoint:
                self.options.on_checkpoint(info)
        _barrier()

    def evaluate(self, files: Path) -> dict[str, float]:
        """The evaluation section run on a checkpoint's files (rank 0, before its manifest exists).

        The model is loaded afresh from the saved files, as `vlmr1 eval` and serving load it, so
        the metrics describe the checkpoint rather than the in-memory (possibly sharded) policy.
        """
        from vlmr1_trainer.evaluation.policy import load_files

        policy = load_files(files, self.config.model, device=_local_device(self.options.accelerator))
        return self._evaluate(policy, files / EVALUATION)

    def evaluate_start(self) -> dict[str, float]:
        """The evaluation section run on the starting model, loaded from ``model.uri`` (rank 0)."""
        from vlmr1_trainer.evaluation.policy import Policy
        from vlmr1_trainer.vlm import load_vlm

        loaded = load_vlm(self.config.model, dtype=torch_dtype(self.config, self.options.accelerator))
        model: Any = loaded.model  # transformers' .to() is typed for dtypes, not device strings
        policy = Policy(loaded.family, model.to(_local_device(self.options.accelerator)), loaded.processor, "")
        policy.uri = self.config.model.uri
        return self._evaluate(policy, self.options.output_dir / START_EVALUATION)

    def _evaluate(self, policy: Any, output: Path) -> dict[str, float]:
        from vlmr1_trainer.evaluation.runner import evaluate, sets_from_config

        evaluation = self.config.evaluation
        assert evaluation is not None
        policy.config = self.config
        try:
            return evaluate(
                policy,
                sets_from_config(self.config),
                batch_size=evaluation.batch_size,
                max_new_tokens=evaluation.max_new_tokens,
                output=output,
            )
        finally:
            del policy
            _free_device_memory(self.options.accelerator)


def _local_device(accelerator: Accelerator) -> str:
    return torch_device(accelerator, int(os.environ.get("LOCAL_RANK", "0")))


def _free_device_memory(accelerator: Accelerator) -> None:
    # The evaluated copy of the model must not stay on the device training goes on with.
    import gc

    gc.collect()
    if accelerator == "nvidia":
        import torch

        torch.cuda.empty_cache()


def _move_contents(source: Path, dest: Path) -> None:
    for item in source.iterdir():
        shutil.move(str(item), dest / item.name)


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def latest_metrics(log_history: list[Mapping[str, Any]]) -> dict[str, float]:
    """The newest logged training metrics (numbers only), recorded in the manifest."""
    for entry in reversed(log_history):
        if "reward" in entry or "loss" in entry:
            return {k: float(v) for k, v in entry.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return {}


def load_policy_model(
    config: TrainerConfig, options: RunOptions, resume_from: Path | None = None
) -> tuple[LoadedVLM, CheckedInputs, Any]:
    """Checks, then the policy model in its fine-tuning mode: (model, checked inputs, peft config).

    Cheapest first (:mod:`vlmr1_trainer.preflight`): the rewards, every data file and a pinned
    model digest are checked before any weights load, so a misspelt reward or a bad dataset line
    is a UserError within seconds. With ``resume_from`` (a full fine-tune's checkpoint) the policy
    weights come from that checkpoint through ``from_pretrained``; the processor always comes
    from the spec's model, so a resumed run sees images exactly as the first one did.
    """
    if options.accelerator == "ascend":
        require_torch_npu()

    from vlmr1_trainer.preflight import check_inputs
    from vlmr1_trainer.vlm import get_family, load_vlm
    from vlmr1_trainer.vlm.prompts import format_question

    template = get_family(config.model.resolved_family).question_template(config.task)
    inputs = check_inputs(config, QuestionTemplate(template, format_question))
    dtype = torch_dtype(config, options.accelerator)
    # A resumed full fine-tune loads the checkpoint's weights (once: at scale every rank holds a copy).
    weights = str(resume_from) if resume_from is not None and config.finetuning.mode != "lora" else None
    try:
        loaded = load_vlm(config.model, dtype=dtype, weights=weights)
    except UserError as exc:
        if weights is None:  # else the checkpoint folder is at fault, and its path is in the message
            exc.at(field="spec.model.uri")
        raise
    peft_config = None
    finetuning = config.finetuning
    if finetuning.mode == "lora":
        peft_config = loaded.family.lora_config(finetuning.resolved_lora)
    elif finetuning.mode == "freezeVision":
        loaded.family.freeze_vision(loaded.model)
    return loaded, inputs, peft_config


def build_grpo_trainer(
    config: TrainerConfig, options: RunOptions, resume_from: Path | None = None
) -> tuple[GRPOTrainer, CheckpointCallback, LoadReport]:
    """A GRPOTrainer for the spec: rewards, data, model, fine-tuning mode and callbacks
    (:func:`load_policy_model` says what is checked first and how resuming loads)."""
    from vlmr1_trainer.data import to_hf_dataset

    loaded, inputs, peft_config = load_policy_model(config, options, resume_from)
    dataset = inputs.dataset
    dataset.row_hook = FamilyRowHook(loaded.family, loaded.processor, config.grpo.max_prompt_length)
    from vlmr1_trainer.rewards.setup import scored_rewards

    rewards, pool = scored_rewards(inputs.rewards, config, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if options.debug:
        from vlmr1_trainer.progress import wrap_rewards

        rewards = wrap_rewards(rewards, options.output_dir, is_main_process=options.rank == 0)
    checkpoints = CheckpointCallback(config, options)
    trainer = grpo_trainer_class()(
        model=loaded.model,
        reward_funcs=rewards,
        args=grpo_args(config, options),
        train_dataset=to_hf_dataset(dataset),
        processing_class=loaded.processor,
        peft_config=peft_config,
        callbacks=[checkpoints.as_callback(), *options.callbacks],
    )
    trainer.reward_pool = pool  # type: ignore[attr-defined]  # closed by train() when the run ends
    return trainer, checkpoints, dataset.report


class AcceleratorError(UserError, RuntimeError):
    """The accelerator the spec asks for cannot be used in this image or on this machine."""


def require_torch_npu() -> None:
    """Register the npu device; only ever imported for Ascend (its autoload breaks CPU torch)."""
    try:
        import torch_npu  # type: ignore[import-not-found]  # noqa: F401
    except ImportError as exc:
        raise AcceleratorError(
            "accelerator ascend needs torch_npu and the CANN libraries",
            fix="use the trainer image's ascend target (pip extra vlmr1[ascend]), or set resources.accelerator "
            "to nvidia or cpu",
        ) from exc


def _vlmr1_trainer(base: type[Any]) -> type[Any]:
    """TRL's trainer ``base`` with two changes around resuming and printing.

    transformers' resume loads a full model's state dict without the key mapping
    from_pretrained applies (Qwen2.5-VL checkpoints store legacy key names), which
    loads nothing; the policy weights were already loaded from the checkpoint with
    from_pretrained (load_policy_model), so only adapters (peft) are loaded here. Logs
    are reported as JSON lines and a progress line by our callbacks instead of printed.
    """
    from transformers import PrinterCallback

    class VLMR1Trainer(base):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.remove_callback(PrinterCallback)

        def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
            from peft import PeftModel

            if isinstance(model or self.model, PeftModel):
                super()._load_from_checkpoint(resume_from_checkpoint, model)

    VLMR1Trainer.__name__ = VLMR1Trainer.__qualname__ = f"VLMR1{base.__name__}"
    return VLMR1Trainer


def grpo_trainer_class() -> type[GRPOTrainer]:
    from trl.trainer.grpo_trainer import GRPOTrainer

    return _vlmr1_trainer(GRPOTrainer)


def sft_trainer_class() -> type[SFTTrainer]:
    from trl.trainer.sft_trainer import SFTTrainer

    return _vlmr1_trainer(SFTTrainer)


class QuestionTemplate:
    """The family's question template as the data loader's ``(question) -> text`` (picklable)."""

    def __init__(self, template: str, render: Callable[[str, str], str]) -> None:
        self.template, self.render = template, render

    def __call__(self, question: str) -> str:
        return self.render(self.template, question)


def train(config: TrainerConfig, options: RunOptions) -> TrainResult:
    """Run the spec's method (GRPO or SFT) to the end (resuming from the newest verified checkpoint)."""
    from vlmr1_trainer import tracking

    tracking.check_installed(config)
    options.output_dir.mkdir(parents=True, exist_ok=True)
    resumed = find_resumable(options.output_dir / CHECKPOINTS) if options.resume else None
    resume_path = resumed.path if resumed else None
    trainer: Any
    if config.method == "sft":
        from vlmr1_trainer.sft import build_sft_trainer

        trainer, checkpoints, report = build_sft_trainer(config, options, resume_path)
    else:
        trainer, checkpoints, report = build_grpo_trainer(config, options, resume_path)
    identity = tracking.job_identity(options.output_dir, options.job_name, options.namespace)
    tracking.install(trainer, config, options.output_dir, identity)
    if resumed is not None:
        log.info("resuming from %s (step %d, %s)", resumed.path, resumed.step, resumed.digest)
    start_metrics: dict[str, float] = {}
    if resumed is None and config.evaluation is not None and config.evaluation.on_start:
        if options.rank == 0:
            start_metrics = checkpoints.evaluate_start()
            if options.on_start_evaluation is not None:
                options.on_start_evaluation(config.model.uri, start_metrics)
        _barrier()
    try:
        with tracking.tracking_environment(config, options.output_dir):
            trainer.train(resume_from_checkpoint=str(resumed.path) if resumed else None)
    finally:
        pool = getattr(trainer, "reward_pool", None)
        if pool is not None:
            pool.close()
    # Every rank is done training; the process group stays up for the ranks' closing work and
    # is left by the entry point (worker.leave_distributed), not here: the DDP reducer the
    # trainer holds would be the group's last owner and tear it down when the trainer is freed.
    _barrier()
    return TrainResult(
        steps=int(trainer.state.global_step),
        checkpoints=checkpoints.saved,
        resumed_from=resumed,
        data_report=report,
        log_history=list(trainer.state.log_history),
        start_metrics=start_metrics,
    )


def world_rank() -> int:
    """This process's global rank under the torchrun environment (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))
