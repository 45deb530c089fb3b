"""GRPOJob: a GRPO training run as a Kubernetes object.

The spec is the trainer's TrainerConfig plus what only Kubernetes needs (resources,
run policy, credentials, a pod template override).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from vlmr1_core.accelerators import Accelerator
from vlmr1_core.api.common import (
    Condition,
    DnsLabel,
    LabelMap,
    ObjectMeta,
    Quantity,
    SecretsSpec,
    Toleration,
)
from vlmr1_core.apimodel import ApiModel, cel_rule, defaulted
from vlmr1_core.checkpoints import DIGEST_PATTERN
from vlmr1_core.config import TrainerConfig

#: Longest GRPOJob name: children are named `<job>-node-<index>` and a Service name
#: is a 63-character DNS label.
MAX_JOB_NAME = 48

GRPOJobPhase = Literal["Pending", "Running", "Restarting", "Suspended", "Succeeded", "Failed"]


class TrainingResources(ApiModel):
    """Where and how wide the training gang runs."""

    accelerator: Accelerator = "nvidia"
    """nvidia (NCCL), ascend (HCCL) or cpu (gloo; development). Devices are requested under the
    resource name the operator's settings give the kind (nvidia.com/gpu, huawei.com/Ascend910 by
    default)."""

    nodes: int = Field(default=1, ge=1, le=1024)
    """Pods in the gang (one per node); index 0 is the master."""

    processes_per_node: int = Field(default=1, ge=1, le=64)
    """Training processes per pod (torchrun --nproc-per-node). Never guessed from devices."""

    devices_per_node: int | None = Field(default=None, ge=1, le=64)
    """Accelerator devices requested per pod. Unset: one per process. Not used with cpu."""

    cpu: Quantity | None = None
    """CPU request and limit per pod, e.g. 16."""

    memory: Quantity | None = None
    """Memory request and limit per pod, e.g. 256Gi."""

    shared_memory: Quantity = "16Gi"
    """Size of /dev/shm (a memory-backed emptyDir) for data loader and NCCL/HCCL buffers."""

    node_selector: LabelMap = Field(default_factory=dict)
    """Node labels the pods must match."""

    tolerations: list[Toleration] = Field(default_factory=list, max_length=64)
    """Taints the pods tolerate."""

    image: str | None = Field(default=None, max_length=512)
    """Trainer image. Unset: the operator's default image for the accelerator."""

    scheduler_name: str | None = Field(default=None, max_length=253)
    """Pod scheduler, e.g. volcano. Unset: the cluster default."""

    gang_scheduling: bool = False
    """Create a Volcano PodGroup (minMember = nodes) so all pods are placed or none."""

    @cel_rule(
        rule="self.accelerator == 'cpu' || !has(self.devicesPerNode) || self.processesPerNode <= self.devicesPerNode",
        message="processesPerNode must not exceed devicesPerNode (each process drives at least one device); "
        "lower processesPerNode or raise devicesPerNode",
        field_path=".processesPerNode",
    )
    def _processes_fit_devices(self) -> bool:
        return (
            self.accelerator == "cpu"
            or self.devices_per_node is None
            or self.processes_per_node <= self.devices_per_node
        )

    @cel_rule(
        rule="self.accelerator != 'cpu' || !has(self.devicesPerNode)",
        message="devicesPerNode is for nvidia and ascend; remove it for accelerator cpu",
        field_path=".devicesPerNode",
    )
    def _no_devices_on_cpu(self) -> bool:
        return self.accelerator != "cpu" or self.devices_per_node is None

    @property
    def resolved_devices_per_node(self) -> int:
        """Devices each pod requests (0 on cpu)."""
        if self.accelerator == "cpu":
            return 0
        return self.devices_per_node or self.processes_per_node

    @property
    def world_size(self) -> int:
        return self.nodes * self.processes_per_node


class RunPolicy(ApiModel):
    """Failure and lifetime policy, as Kubeflow's runPolicy."""

    backoff_limit: int = Field(default=3, ge=0, le=1000)
    """Whole-gang restarts (from the last checkpoint) after a pod fails, before the job fails."""

    active_deadline_seconds: int | None = Field(default=None, ge=1)
    """Fail the job when it has been running longer than this (seconds)."""

    ttl_seconds_after_finished: int | None = Field(default=None, ge=0)
    """Delete the job this many seconds after it succeeded or failed. Unset: keep it."""

    suspend: bool = False
    """true deletes the pods and keeps the job (Kueue sets this); false starts or resumes it."""


class GRPOJobSpec(TrainerConfig):
    """A GRPO training job: the trainer config plus where and how it runs on Kubernetes."""

    resources: TrainingResources = defaulted(TrainingResources)
    """Nodes, processes, devices and placement of the training gang."""

    run_policy: RunPolicy = defaulted(RunPolicy)
    """Restarts, deadline, clean-up and suspension."""

    secrets: SecretsSpec | None = None
    """Credentials for the hub and object storage, by reference."""

    pod_template: dict[str, Any] | None = None
    """A partial PodTemplateSpec (metadata and spec) merged over every generated pod, for
    settings the API does not model (extra volumes, sidecars, securityContext overrides)."""

    @cel_rule(
        rule="self.method == 'sft' || (self.training.perDeviceBatchSize * self.resources.nodes"
        " * self.resources.processesPerNode * self.training.gradientAccumulationSteps) % self.grpo.numGenerations == 0",
        message="grpo.numGenerations must divide the generation batch (training.perDeviceBatchSize x "
        "resources.nodes x resources.processesPerNode x training.gradientAccumulationSteps); "
        "change numGenerations or the batch settings",
        field_path=".grpo.numGenerations",
    )
    def _generations_divide_batch(self) -> bool:
        # SFT samples no generations: its batch is any size.
        return self.method == "sft" or self.generation_batch_size % self.grpo.num_generations == 0

    @property
    def generation_batch_size(self) -> int:
        """Completions generated per optimiser step across the gang (TRL's generation_batch_size)."""
        return (
            self.training.per_device_batch_size * self.resources.world_size * self.training.gradient_accumulation_steps
        )


class ReplicaCounts(ApiModel):
    """Pod counts of one role."""

    active: int = 0
    """Pods pending or running."""

    succeeded: int = 0
    """Pods that exited 0."""

    failed: int = 0
    """Pods that failed."""


class TrainingProgress(ApiModel):
    """Progress reported by the trainer's rank 0."""

    step: int = 0
    """Optimiser steps done."""

    max_steps: int | None = None
    """Total steps of the run, when known."""

    epoch: float | None = None
    """Fractional epoch."""

    reward_mean: float | None = None
    """Mean total reward of the latest logged step."""

    reward_std: float | None = None
    """Standard deviation of the total reward of the latest logged step."""

    kl: float | None = None
    """Mean KL to the reference model at the latest logged step."""

    loss: float | None = None
    """Training loss at the latest logged step: what method sft reports instead of a reward."""

    samples_per_second: float | None = None
    """Training throughput (completions per second)."""

    eta_seconds: int | None = None
    """Estimated seconds to the last step."""

    updated_at: datetime | None = None
    """When the trainer last reported."""


class CheckpointStatus(ApiModel):
    """A saved, verified checkpoint."""

    uri: str
    """Where it is stored."""

    step: int = Field(ge=0)
    """Step it was saved at."""

    digest: str = Field(pattern=DIGEST_PATTERN)
    """sha256 of its manifest, which lists the sha256 of every file."""

    metrics: dict[str, float] = Field(default_factory=dict)
    """Training and evaluation metrics at that step."""

    best: bool = False
    """Whether this is the job's best checkpoint (by the declared metric, else mean reward)."""

    created_at: datetime | None = None
    """When it was saved."""


class GRPOJobStatus(ApiModel):
    """Observed state of a GRPOJob, written by the operator."""

    phase: GRPOJobPhase = "Pending"
    """Pending, Running, Restarting, Suspended, Succeeded or Failed."""

    conditions: list[Condition] = Field(default_factory=list)
    """One per phase the job has been in (Pending, Running, Restarting, Suspended, Succeeded,
    Failed), True while it is in it; and Invalid when the operator rejects the spec."""

    observed_generation: int | None = None
    """metadata.generation this status describes."""

    replicas: dict[str, ReplicaCounts] = Field(default_factory=dict)
    """Pod counts per role (master, worker)."""

    restarts: int = 0
    """Whole-gang restarts so far."""

    start_time: datetime | None = None
    """When the gang was first started."""

    completion_time: datetime | None = None
    """When the job succeeded or failed."""

    progress: TrainingProgress | None = None
    """Latest progress from the trainer."""

    checkpoints: list[CheckpointStatus] = Field(default_factory=list)
    """Saved checkpoints, oldest first."""

    best_checkpoint: CheckpointStatus | None = None
    """The best checkpoint by spec.checkpoint.bestMetric (ties to the newer); what fromJob best and
    `vlmr1 promote --select best` choose."""


class GRPOJobMeta(ObjectMeta):
    """Object metadata; the name also names the job's pods and services."""

    name: DnsLabel(MAX_JOB_NAME, "pods and services are named <name>-node-<index>")  # type: ignore[valid-type]
    """Job name: a DNS label of at most 48 characters (children are named <name>-node-<index>)."""


class GRPOJob(ApiModel):
    """A GRPO training job of a vision-language model on verifiable rewards."""

    api_version: Literal["vlmr1.io/v1alpha1"] = "vlmr1.io/v1alpha1"
    """Always vlmr1.io/v1alpha1."""

    kind: Literal["GRPOJob"] = "GRPOJob"
    """Always GRPOJob."""

    metadata: GRPOJobMeta
    """Standard object metadata."""

    spec: GRPOJobSpec
    """Desired training job."""

    status: GRPOJobStatus | None = None
    """Observed state (written by the operator)."""
