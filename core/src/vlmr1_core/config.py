"""TrainerConfig: the contract between the operator and the trainer.

The GRPOJob spec *is* a TrainerConfig plus the Kubernetes-only fields (resources,
run policy, pod template), so the CRD schema, the operator and the trainer read one
definition. This module imports nothing but pydantic (and the standard library):
the operator image installs vlmr1 without the trainer extra.

Defaults follow VLM-R1's run scripts (run_grpo_rec.sh and its GRPOConfig) where a
user of VLM-R1 would expect them; each field's docstring says where it differs.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, model_validator

from vlmr1_core.apimodel import ApiModel, cel_rule, defaulted
from vlmr1_core.checkpoints import DIGEST_PATTERN
from vlmr1_core.reward_config import RewardCodeSpec, RewardSpec, ScoringSpec
from vlmr1_core.uri import Uri

Task = Literal["rec", "ovd", "math", "gui", "mcq", "custom"]
EvalTask = Literal["rec", "ovd", "math", "gui", "mcq"]

#: Metrics of each evaluation task (vlmr1_trainer.evaluation computes them), the headline
#: first. In a checkpoint's metrics they are named ``eval/<dataset>/<metric>``. rec_acc follows
#: VLM-R1's evaluation script, rec_acc_reward its training reward's parse; od_acc is the
#: single-box accuracy of VLM-R1's OVD script (absent on a set without single-box samples).
EVAL_METRICS: dict[EvalTask, tuple[str, ...]] = {
    "rec": ("rec_acc", "rec_acc_reward"),
    "ovd": ("ap", "ap50", "od_acc"),
    "math": ("math_acc",),
    "gui": ("gui_acc",),
    "mcq": ("mcq_acc",),
}
_EVAL_METRIC_RE = r"^eval/[^/]+/(" + "|".join(m for ms in EVAL_METRICS.values() for m in ms) + r")$"
#: Experiment trackers ``training.reportTo`` accepts: transformers' ``report_to`` names.
Tracker = Literal["tensorboard", "mlflow", "wandb", "trackio"]
ModelFamily = Literal["qwen2.5-vl", "qwen3-vl", "qwen3.5", "glm4.1v", "internvl"]

#: Substrings of a model uri (lower-cased) that identify its family. The same table
#: generates the CEL rule that asks for ``model.family`` when none matches.
FAMILY_PATTERNS: dict[ModelFamily, tuple[str, ...]] = {
    "qwen2.5-vl": ("qwen2.5-vl", "qwen2_5_vl", "qwen2.5vl"),
    "qwen3-vl": ("qwen3-vl", "qwen3_vl", "qwen3vl"),
    "qwen3.5": ("qwen3.5", "qwen3_5"),
    "glm4.1v": ("glm-4.1v", "glm4.1v", "glm4_1v", "glm4v"),
    "internvl": ("internvl",),
}

#: Rewards used when a GRPOJob names none, as VLM-R1's scripts for each task do.
DEFAULT_REWARDS: dict[Task, tuple[str, ...]] = {
    "rec": ("rec_iou", "rec_format"),
    "ovd": ("od_length", "format"),
    "math": ("math", "format"),
    "gui": ("all_match", "format"),
    "mcq": ("mcq", "format"),
    "custom": (),
}

#: Completion budget (tokens) per task when ``grpo.maxCompletionLength`` is unset.
#: REC answers are one short box (VLM-R1's 256); detection lists and math
#: derivations need more room.
DEFAULT_MAX_COMPLETION_LENGTH: dict[Task, int] = {
    "rec": 256,
    "ovd": 1024,
    "math": 1024,
    "gui": 512,
    "mcq": 256,
    "custom": 512,
}


def _family_cel() -> str:
    tests = [
        f"self.uri.lowerAscii().contains('{pattern}')" for patterns in FAMILY_PATTERNS.values() for pattern in patterns
    ]
    return "has(self.family) || " + " || ".join(tests)


def detect_family(uri: str) -> ModelFamily | None:
    """The model family a uri names, or None (then ``model.family`` must be set).

    >>> detect_family("hf://Qwen/Qwen2.5-VL-3B-Instruct")
    'qwen2.5-vl'
    >>> detect_family("OpenGVLab/InternVL3-1B-hf")
    'internvl'
    """
    lowered = uri.lower()
    for family, patterns in FAMILY_PATTERNS.items():
        if any(p in lowered for p in patterns):
            return family
    return None


class ModelSpec(ApiModel):
    """The policy model to train."""

    uri: Uri
    """Where the weights are: `hf://org/name` or a bare hub id `org/name` (Hugging Face hub),
    `s3://bucket/prefix` (downloaded first), `pvc://claim/path` (mounted into the pods),
    a local path, or `builtin://tiny-qwen2.5-vl` / `-qwen3-vl` / `-qwen3.5` / `-glm4.1v` / `-internvl` (a tiny
    random-weight model built offline, for development) / `builtin://tiny-qwen2.5-vl-colour` (the
    tiny Qwen2.5-VL after a short SFT on the colour-shapes question). A vlmr1 checkpoint folder
    (from SFT or GRPO) is a model too; a LoRA one is merged into its base once, cached by digest."""

    digest: str | None = Field(default=None, pattern=DIGEST_PATTERN)
    """Pin the starting checkpoint: `sha256:<hex>` as `vlmr1 checkpoints verify` prints it. The
    checkpoint at uri is verified against its manifest and its digest compared before any
    training step; a mismatch stops the job (exit 2, a Failed GRPOJob) naming both digests, as a
    VLMService refuses to serve one. Unset: the uri is trusted as it is."""

    family: ModelFamily | None = None
    """Model family (`qwen2.5-vl`, `qwen3-vl`, `qwen3.5`, `glm4.1v` or `internvl`). Detected from
    the uri when unset (hub ids and builtin names say it; a checkpoint folder does not)."""

    revision: str | None = Field(default=None, max_length=256)
    """Hub revision (branch, tag or commit) for hub ids; ignored for paths."""

    attn_implementation: Literal["flash_attention_2", "sdpa", "eager"] | None = None
    """Attention kernel. Unset: flash_attention_2 where flash-attn and a CUDA device are there,
    else sdpa. flash_attention_2 asked for where it cannot run falls back to sdpa with a warning."""

    min_pixels: int = Field(default=3136, ge=784)
    """Smallest image size (pixels) the processor resizes to. VLM-R1: 3136 (56x56)."""

    max_pixels: int = Field(default=12845056, ge=784)
    """Largest image size (pixels) the processor resizes to. VLM-R1: 12845056."""

    @cel_rule(
        rule=_family_cel(),
        message="cannot tell the model family from the uri; set model.family to qwen2.5-vl, qwen3-vl, qwen3.5, "
        "glm4.1v or internvl",
        field_path=".family",
    )
    def _family_known(self) -> bool:
        return self.family is not None or detect_family(self.uri) is not None

    @cel_rule(
        rule="self.minPixels <= self.maxPixels",
        message="minPixels must not exceed maxPixels",
        field_path=".minPixels",
    )
    def _pixels_ordered(self) -> bool:
        return self.min_pixels <= self.max_pixels

    @property
    def resolved_family(self) -> ModelFamily:
        family = self.family or detect_family(self.uri)
        assert family is not None  # guaranteed by _family_known
        return family


class DatasetSpec(ApiModel):
    """One VLM-R1 JSONL file and the folder its image paths are relative to."""

    jsonl: Uri
    """The JSONL file (local path, pvc://claim/path or s3://bucket/key): one sample per line
    with `image` (a path or a list of paths), `conversations` (human, then gpt) and
    optionally `accu_reward_method`."""

    image_root: Uri | None = None
    """Folder the `image` paths are relative to. Unset: the JSONL file's folder."""

    reward_method: str | None = Field(default=None, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    """Accuracy reward method for every sample of this file (VLM-R1's per-file method),
    unless a sample names its own `accu_reward_method`."""


class LoraSpec(ApiModel):
    """LoRA adapter settings (language model only; the vision tower never gets adapters)."""

    r: int = Field(default=64, ge=1, le=1024)
    """Adapter rank. VLM-R1's LoRA script: 64."""

    alpha: int = Field(default=128, ge=1)
    """LoRA alpha (scaling = alpha / r). VLM-R1's LoRA script: 128."""

    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    """Dropout on the adapter input. VLM-R1's LoRA script: 0.05."""

    target_modules: list[Annotated[str, Field(max_length=128)]] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        max_length=64,
    )
    """Module name suffixes that get adapters (matched in the language model only)."""


class FinetuningSpec(ApiModel):
    """Which parameters are trained."""

    mode: Literal["full", "lora", "freezeVision"] = "full"
    """`full`: every parameter. `lora`: adapters on the language model, everything else frozen.
    `freezeVision`: every parameter except the vision tower (VLM-R1's freeze_vision_modules)."""

    lora: LoraSpec | None = None
    """LoRA settings; only with mode lora (defaults apply when mode is lora and this is unset)."""

    @cel_rule(
        rule="!has(self.lora) || self.mode == 'lora'",
        message="lora settings are only used with mode: lora; set mode: lora or remove lora",
        field_path=".lora",
    )
    def _lora_only_with_lora_mode(self) -> bool:
        return self.lora is None or self.mode == "lora"

    @property
    def resolved_lora(self) -> LoraSpec | None:
        if self.mode != "lora":
            return None
        return self.lora or LoraSpec()


class GrpoSpec(ApiModel):
    """GRPO algorithm settings (TRL GRPOConfig names in brackets)."""

    num_generations: int = Field(default=8, ge=2, le=256)
    """Completions sampled per prompt [num_generations]. VLM-R1: 8."""

    beta: float = Field(default=0.04, ge=0.0)
    """KL coefficient against the reference model [beta]. VLM-R1: 0.04; 0 drops the reference model."""

    epsilon: float = Field(default=0.2, gt=0.0, lt=1.0)
    """Lower clip range of the importance ratio [epsilon]. VLM-R1: 0.2."""

    epsilon_high: float | None = Field(default=None, gt=0.0, lt=10.0)
    """Upper clip range (DAPO's clip-higher) [epsilon_high]. Unset: equal to epsilon."""

    loss_type: Literal["grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo", "vespo"] = "grpo"
    """Loss formulation [loss_type]. `grpo` is VLM-R1's per-sequence mean; the others as TRL documents."""

    importance_sampling_level: Literal["token", "sequence"] = "token"
    """`token` (GRPO) or `sequence` (GSPO) importance ratios [importance_sampling_level]."""

    scale_rewards: Literal["group", "batch", "none"] = "group"
    """Divide advantages by the reward std of the group, the batch, or not at all (Dr. GRPO)."""

    temperature: float = Field(default=0.9, gt=0.0, le=10.0)
    """Sampling temperature for rollouts. VLM-R1's default 0.9 (VLM-R1 itself ignores it; we honour it)."""

    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    """Nucleus sampling for rollouts."""

    num_iterations: int = Field(default=1, ge=1, le=64)
    """Optimisation passes per generation batch (the mu of the GRPO paper) [num_iterations]."""

    max_prompt_length: int | None = Field(default=None, ge=16)
    """Longest prompt in tokens, image tokens included. A longer sample is a bad sample (an error,
    or skipped with onBadSample: skip): TRL does not truncate multimodal prompts, since a cut
    through image tokens breaks them. Checking costs one extra processor pass per sample.
    Unset: no limit. VLM-R1's scripts truncate at 1024."""

    max_completion_length: int | None = Field(default=None, ge=1, le=131072)
    """Completion budget in tokens. Unset: per task (rec 256, ovd 1024, math 1024, gui 512, mcq 256, custom 512)."""

    @cel_rule(
        rule="!has(self.epsilonHigh) || self.epsilonHigh >= self.epsilon",
        message="epsilonHigh must be at least epsilon (it widens the upper clip); raise it or remove it",
        field_path=".epsilonHigh",
    )
    def _clip_higher_not_lower(self) -> bool:
        return self.epsilon_high is None or self.epsilon_high >= self.epsilon


class TrainingSpec(ApiModel):
    """Optimisation, schedule and intervals (TRL/transformers TrainingArguments)."""

    learning_rate: float = Field(default=1e-6, gt=0.0, le=1.0)
    """Peak learning rate. VLM-R1: 1e-6."""

    lr_scheduler: Literal["constant", "linear", "cosine", "constant_with_warmup"] = "linear"
    """Learning-rate schedule."""

    warmup_ratio: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Share of the steps spent warming the learning rate up."""

    max_steps: int | None = Field(default=None, ge=1)
    """Stop after this many optimiser steps. Mutually exclusive with numEpochs."""

    num_epochs: float | None = Field(default=None, gt=0.0)
    """Passes over the data when maxSteps is unset. Unset too: 2, as VLM-R1's scripts."""

    per_device_batch_size: int = Field(default=8, ge=1, le=4096)
    """Completions per process per micro-step [per_device_train_batch_size]. Default 8 (TRL's): one
    prompt's group of numGenerations per process, valid at any world size. VLM-R1's 8-GPU scripts: 1."""

    gradient_accumulation_steps: int = Field(default=2, ge=1, le=4096)
    """Micro-steps per optimiser step. VLM-R1: 2."""

    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory. VLM-R1's full fine-tune: off."""

    zero_stage: Literal[0, 1, 2, 3] | None = None
    """DeepSpeed ZeRO stage (VLM-R1: 3 full fine-tune, 2 LoRA). Unset: no DeepSpeed (DDP)."""

    precision: Literal["bf16", "fp16", "fp32"] = "bf16"
    """Training precision on accelerators; CPU always trains in fp32. VLM-R1: bf16."""

    max_grad_norm: float = Field(default=1.0, gt=0.0)
    """Gradient clipping norm."""

    seed: int = Field(default=42, ge=0)
    """Random seed for data order, sampling and initialisation."""

    save_steps: int = Field(default=100, ge=1)
    """Save a checkpoint every this many steps (and at the end). VLM-R1: 100."""

    logging_steps: int = Field(default=1, ge=1)
    """Report progress every this many steps."""

    report_to: list[Tracker] = Field(default_factory=list, max_length=4)
    """Experiment trackers rank 0 sends every logged step to [report_to]: `tensorboard` (event files
    in the run folder's tensorboard/, next to the checkpoints), `mlflow` (MLFLOW_TRACKING_URI),
    `wandb` (WANDB_API_KEY, or WANDB_MODE=offline), `trackio` (where the image has it). Each run is
    named runName and carries the job name, namespace and this config as parameters. Endpoints and
    credentials come from the environment, in a GRPOJob from secrets.tracking. A tracker that
    cannot be reached is a warning and training goes on without it. Default: none (docs/tracking.md)."""

    project: str | None = Field(default=None, min_length=1, max_length=128)
    """Project the runs are grouped in: the W&B and trackio project and the MLflow experiment
    [project]. Unset: WANDB_PROJECT / MLFLOW_EXPERIMENT_NAME from the environment, else each
    tracker's default (W&B and trackio `huggingface`, MLflow's Default experiment)."""

    run_name: str | None = Field(default=None, min_length=1, max_length=128)
    """Name of the run in the trackers [run_name]. Unset: the GRPOJob's name."""

    @cel_rule(
        rule="!has(self.reportTo) || self.reportTo.all(t, self.reportTo.exists_one(u, u == t))",
        message="reportTo names a tracker twice; list each once",
        field_path=".reportTo",
    )
    def _trackers_once(self) -> bool:
        return len(set(self.report_to)) == len(self.report_to)

    @cel_rule(
        rule="!(has(self.maxSteps) && has(self.numEpochs))",
        message="set either maxSteps or numEpochs, not both",
        field_path=".maxSteps",
    )
    def _one_stopping_rule(self) -> bool:
        return self.max_steps is None or self.num_epochs is None

    @property
    def resolved_num_epochs(self) -> float:
        return self.num_epochs if self.num_epochs is not None else 2.0


class VllmSpec(ApiModel):
    """vLLM rollout settings (only with a vllm rollout engine)."""

    server_url: str | None = Field(default=None, max_length=512, pattern=r"^https?://[^\s]+$")
    """URL of a running `trl vllm-serve` server (engine vllmServer)."""

    gpu_memory_utilization: float = Field(default=0.3, gt=0.0, le=1.0)
    """Share of each GPU's memory vLLM may take in colocate mode."""

    tensor_parallel_size: int = Field(default=1, ge=1, le=64)
    """Tensor parallel size of the colocated vLLM engine."""


class RolloutSpec(ApiModel):
    """How completions are generated."""

    engine: Literal["hf", "vllmColocate", "vllmServer"] = "hf"
    """`hf`: transformers generate in the training processes (VLM-R1's default).
    `vllmColocate`: vLLM inside each training process. `vllmServer`: a separate vLLM server."""

    vllm: VllmSpec | None = None
    """vLLM settings; only with engine vllmColocate or vllmServer."""

    @cel_rule(
        rule="!has(self.vllm) || self.engine != 'hf'",
        message="vllm settings are only used with engine vllmColocate or vllmServer; change engine or remove vllm",
        field_path=".vllm",
    )
    def _vllm_only_with_vllm(self) -> bool:
        return self.vllm is None or self.engine != "hf"

    @cel_rule(
        rule="self.engine != 'vllmServer' || (has(self.vllm) && has(self.vllm.serverUrl))",
        message="engine vllmServer needs vllm.serverUrl (the URL of a running trl vllm-serve)",
        field_path=".vllm",
    )
    def _server_needs_url(self) -> bool:
        return self.engine != "vllmServer" or (self.vllm is not None and self.vllm.server_url is not None)


class CheckpointSpec(ApiModel):
    """Where checkpoints go and how many are kept."""

    uri: Uri | None = None
    """Checkpoint folder: `pvc://claim/path` (mounted), `s3://bucket/prefix`, or a local path.
    Unset: the pod's ephemeral storage, so a gang restart cannot resume; set it for recovery."""

    keep: int | None = Field(default=None, ge=1)
    """Keep the newest N checkpoints (the best by bestMetric is never pruned). Unset: keep all."""

    best_metric: str = Field(default="reward", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:/-]+$")
    """The checkpoint metric that defines "best" (status.bestCheckpoint, pruning, `vlmr1 promote
    --select best`): a training metric as logged (reward, loss, kl, rewards/rec_iou/mean) or an
    evaluation metric eval/<dataset>/<metric> (rec_acc, ap, ap50, math_acc, gui_acc).
    Default: the mean training reward."""

    greater_is_better: bool = True
    """Whether a larger bestMetric is better (false for a loss)."""


class EvalDatasetSpec(ApiModel):
    """One evaluation set: VLM-R1 JSONL with ground truth, scored with its task's metric."""

    name: str = Field(max_length=63, pattern=r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")
    """Short name, used in metric names (eval/<name>/rec_acc) and result files, e.g. refcoco-val."""

    jsonl: Uri
    """The JSONL file (local path, pvc://claim/path or s3://bucket/key), in the training data's format."""

    image_root: Uri | None = None
    """Folder the `image` paths are relative to. Unset: the JSONL file's folder."""

    task: EvalTask | None = None
    """Metric: rec (Acc@IoU0.5, rec_acc), ovd (COCO AP and AP50 over the dataset), math (share
    verified correct, math_acc), gui (exact match, gui_acc) or mcq (the chosen letter is the
    answer's, mcq_acc). Unset: the job's task."""

    max_samples: int | None = Field(default=None, ge=1)
    """Score only the first N samples: the same fixed subset for every checkpoint, so their
    metrics compare. Unset: all samples."""


class EvaluationSpec(ApiModel):
    """Evaluation of every saved checkpoint.

    Runs in the trainer's rank 0 after each save, on the saved files (other ranks wait), before
    the manifest is written: the metrics become part of the checkpoint's digest, so a VLMService
    pinning that digest serves exactly the weights that scored them. Keep the sets small
    (maxSamples), or evaluate apart with `vlmr1 eval`, when generation is slow.
    """

    datasets: list[EvalDatasetSpec] = Field(min_length=1, max_length=16)
    """Evaluation sets (each with a unique name)."""

    batch_size: int = Field(default=8, ge=1, le=1024)
    """Prompts per greedy generation batch."""

    max_new_tokens: int | None = Field(default=None, ge=1, le=131072)
    """Generation budget in tokens. Unset: grpo.maxCompletionLength, the budget the policy trained with."""

    on_start: bool = False
    """Also evaluate the starting model before the first step (not when resuming): the baseline
    every checkpoint's metrics compare against, reported as step 0 in metrics.jsonl and the run
    summary. Costs one more model load and generation pass on rank 0. Default off."""

    @cel_rule(
        rule="self.datasets.all(d, self.datasets.exists_one(e, e.name == d.name))",
        message="evaluation dataset names must be unique (they name the metrics); rename one",
        field_path=".datasets",
    )
    def _unique_names(self) -> bool:
        names = [d.name for d in self.datasets]
        return len(names) == len(set(names))


class TrainerConfig(ApiModel):
    """Everything the trainer needs to run one training job: GRPO, or SFT (method)."""

    method: Literal["grpo", "sft"] = "grpo"
    """grpo: reinforcement learning on the rewards (TRL's GRPOTrainer). sft: supervised
    fine-tuning on each sample's answer turn (TRL's SFTTrainer), the warm start VLM-R1 runs with a
    separate tool. One field rather than a second kind: the data, model, fine-tuning, checkpoint,
    evaluation, resources and pod contract are the same, and an SFT checkpoint is a GRPOJob's
    model.uri. With sft, rewards and the grpo section (but maxPromptLength) are not used."""

    model: ModelSpec
    """The policy model."""

    task: Task = "rec"
    """Task, which picks the prompt template, default rewards and completion budget:
    rec (referring expression -> box), ovd (open-vocabulary detection), math, gui
    (GUI defect detection, multi-image), mcq (multiple choice: a letter), custom (rewards
    must be given)."""

    datasets: list[DatasetSpec] = Field(min_length=1, max_length=64)
    """Training data: VLM-R1 JSONL files, each with its image folder."""

    on_bad_sample: Literal["error", "skip"] = "error"
    """A sample with a missing or unreadable image or malformed JSON: stop with an error
    naming file and line, or skip it with a warning (counted in the run summary)."""

    rewards: list[RewardSpec] = Field(default_factory=list, max_length=32)
    """Weighted rewards. Empty: the task's defaults (rec: rec_iou + rec_format; ovd: od_length +
    format; math: math + format; gui: all_match + format; mcq: mcq + format)."""

    reward_code: RewardCodeSpec | None = None
    """Reward source shipped with the job (a ConfigMap or a folder), put on the trainer's import
    path for MODULE:ATTRIBUTE rewards the image does not contain. Unset: the image's own code."""

    scoring: ScoringSpec = defaulted(ScoringSpec)
    """Time budgets and worker processes for reward scoring."""

    finetuning: FinetuningSpec = defaulted(FinetuningSpec)
    """Full fine-tuning, LoRA, or a frozen vision tower."""

    grpo: GrpoSpec = defaulted(GrpoSpec)
    """GRPO algorithm settings."""

    training: TrainingSpec = defaulted(TrainingSpec)
    """Optimisation, schedule and intervals."""

    rollout: RolloutSpec = defaulted(RolloutSpec)
    """Completion generation engine."""

    checkpoint: CheckpointSpec = defaulted(CheckpointSpec)
    """Checkpoint storage and retention."""

    evaluation: EvaluationSpec | None = None
    """Evaluate each saved checkpoint on held-out data; the metrics land in its manifest and in
    status.checkpoints[].metrics. Unset: checkpoints carry training metrics only."""

    @cel_rule(
        rule="self.method == 'sft' || self.task != 'custom' || (has(self.rewards) && size(self.rewards) > 0)",
        message="task custom has no default rewards; list them under rewards",
        field_path=".rewards",
    )
    def _custom_needs_rewards(self) -> bool:
        return self.method == "sft" or self.task != "custom" or bool(self.rewards)

    @cel_rule(
        rule="self.method != 'sft' || !has(self.rewards) || size(self.rewards) == 0",
        message="method sft trains on the answer turns and uses no rewards; remove rewards or set method: grpo",
        field_path=".rewards",
    )
    def _sft_has_no_rewards(self) -> bool:
        return self.method != "sft" or not self.rewards

    @cel_rule(
        rule="self.method != 'sft' || !self.checkpoint.bestMetric.startsWith('reward')",
        message="method sft logs no reward; set checkpoint.bestMetric to loss (with greaterIsBetter: false) or "
        "an eval/<dataset>/<metric>",
        field_path=".checkpoint.bestMetric",
    )
    def _sft_best_metric(self) -> bool:
        return self.method != "sft" or not self.checkpoint.best_metric.startswith("reward")

    @cel_rule(
        rule="!has(self.evaluation) || self.task != 'custom' || self.evaluation.datasets.all(d, has(d.task))",
        message="task custom has no evaluation metric; set task (rec, ovd, math, gui or mcq) on every evaluation "
        "dataset",
        field_path=".evaluation",
    )
    def _custom_eval_needs_task(self) -> bool:
        return self.evaluation is None or self.task != "custom" or all(d.task for d in self.evaluation.datasets)

    @cel_rule(
        rule="!self.checkpoint.bestMetric.startsWith('eval/') || (self.checkpoint.bestMetric.matches('"
        + _EVAL_METRIC_RE
        + "') && has(self.evaluation) && self.evaluation.datasets.exists(d, "
        "self.checkpoint.bestMetric.startsWith('eval/' + d.name + '/')))",
        message="checkpoint.bestMetric eval/<dataset>/<metric> must name an evaluation dataset and one of "
        + ", ".join(m for ms in EVAL_METRICS.values() for m in ms),
        field_path=".checkpoint.bestMetric",
    )
    def _best_metric_evaluated(self) -> bool:
        metric = self.checkpoint.best_metric
        if not metric.startswith("eval/"):
            return True
        names = [d.name for d in self.evaluation.datasets] if self.evaluation else []
        return re.match(_EVAL_METRIC_RE, metric) is not None and any(metric.startswith(f"eval/{n}/") for n in names)

    def eval_task(self, dataset: EvalDatasetSpec) -> EvalTask:
        """An evaluation dataset's task: its own, else the job's."""
        if dataset.task is not None:
            return dataset.task
        assert self.task != "custom"  # guaranteed by _custom_eval_needs_task
        return self.task

    @model_validator(mode="after")
    def _apply_task_defaults(self) -> TrainerConfig:
        # Filled in here (not left implicit) so the ConfigMap the operator renders and the
        # manifest saved with every checkpoint state exactly what ran.
        if not self.rewards and self.method == "grpo":
            self.rewards = [RewardSpec(name=name) for name in DEFAULT_REWARDS[self.task]]
        if self.grpo.max_completion_length is None:
            self.grpo.max_completion_length = DEFAULT_MAX_COMPLETION_LENGTH[self.task]
        return self

    def trainer_view(self) -> TrainerConfig:
        """Only the TrainerConfig fields (drops what a subclass such as GRPOJobSpec adds)."""
        fields = set(TrainerConfig.model_fields)
        return TrainerConfig.model_validate(self.model_dump(include=fields))
