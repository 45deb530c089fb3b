"""VLMService: a checkpoint served by an inference engine, scaled on token throughput."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr

from vlmr1_core.accelerators import ServingAccelerator
from vlmr1_core.api.common import (
    Condition,
    DnsLabel,
    LabelMap,
    ObjectMeta,
    Quantity,
    SecretRef,
    Toleration,
)
from vlmr1_core.apimodel import ApiModel, SecretKeyRef, cel_rule, defaulted
from vlmr1_core.checkpoints import DIGEST_PATTERN
from vlmr1_core.config import ModelFamily
from vlmr1_core.uri import Uri

Engine = Literal["vllm", "xllm", "vllm-ascend", "transformers"]

#: Which accelerators each engine runs on. The CEL rule and its message are generated from this
#: table. xllm supports the Atlas A2/A3 generations only (JD's xllm docs), so not the 310P.
ENGINE_ACCELERATORS: dict[Engine, tuple[ServingAccelerator, ...]] = {
    "vllm": ("nvidia",),
    "xllm": ("ascend",),
    "vllm-ascend": ("ascend", "ascend310p"),
    "transformers": ("cpu", "nvidia"),
}

#: Why an engine is missing from an accelerator, for the refusal's message.
ENGINE_LIMITS: dict[Engine, str] = {
    "xllm": "xllm supports Atlas A2/A3 (ascend) only, not the Atlas 300I Duo (ascend310p)",
}

ServingDtype = Literal["auto", "bfloat16", "float16", "float32"]

VLMServicePhase = Literal["Pending", "Progressing", "Ready", "Failed"]

EngineArgValue = StrictStr | StrictInt | StrictFloat | StrictBool


def _engine_accelerator_cel() -> str:
    clauses = [
        f"(self.engine.name == '{engine}' && self.resources.accelerator in {list(accels)})"
        for engine, accels in ENGINE_ACCELERATORS.items()
    ]
    return " || ".join(clauses)


def _engine_accelerator_message() -> str:
    runs = "; ".join(f"{engine} on {' or '.join(accels)}" for engine, accels in ENGINE_ACCELERATORS.items())
    limits = "".join(f" ({why})" for why in ENGINE_LIMITS.values())
    return f"engine and accelerator do not match: {runs}{limits}; change engine.name or resources.accelerator"


class JobCheckpointRef(ApiModel):
    """A checkpoint of a GRPOJob in the same namespace, resolved by the operator."""

    name: str = Field(min_length=1, max_length=253)
    """GRPOJob name."""

    checkpoint: str = Field(default="best", pattern=r"^(best|latest|[0-9]+)$")
    """best (the job's best checkpoint), latest, or a step number."""


class ServedModel(ApiModel):
    """Which weights to serve: a pinned checkpoint, or a GRPOJob's checkpoint."""

    uri: Uri | None = None
    """Checkpoint location: `pvc://claim/path`, `s3://bucket/prefix`, `hf://org/name` or a path."""

    digest: str | None = Field(default=None, pattern=DIGEST_PATTERN)
    """sha256 of the checkpoint's manifest.json (`vlmr1 checkpoints verify` prints it); required
    with uri so a promotion is one reviewed, immutable change."""

    from_job: JobCheckpointRef | None = None
    """Serve a GRPOJob's verified checkpoint instead of a pinned uri."""

    family: ModelFamily | None = None
    """Model family; detected from the checkpoint's manifest when unset."""

    served_model_name: str | None = Field(default=None, max_length=253)
    """Model name clients send in OpenAI requests. Unset: the VLMService name."""

    @cel_rule(
        rule="has(self.uri) != has(self.fromJob)",
        message="set exactly one of model.uri (with model.digest) or model.fromJob",
        field_path=".uri",
    )
    def _one_source(self) -> bool:
        return (self.uri is None) != (self.from_job is None)

    @cel_rule(
        rule="has(self.uri) == has(self.digest)",
        message="model.uri needs model.digest (sha256:<64 hex> of the checkpoint manifest), and digest "
        "is only used with uri",
        field_path=".digest",
    )
    def _uri_pinned(self) -> bool:
        return (self.uri is None) == (self.digest is None)


class EngineSpec(ApiModel):
    """The inference engine and its settings."""

    name: Engine = "vllm"
    """vllm (NVIDIA), xllm or vllm-ascend (Ascend), transformers (CPU or NVIDIA, for development)."""

    tensor_parallel_size: int = Field(default=1, ge=1, le=64)
    """Devices one model copy is split over; at most devicesPerReplica."""

    max_model_len: int | None = Field(default=None, ge=16)
    """Context length (prompt + completion tokens). Unset: the model's."""

    dtype: ServingDtype | None = None
    """Weights and activations dtype: auto (the checkpoint's torch_dtype), bfloat16, float16 or
    float32. Unset: the engine's default (vLLM: auto; the CPU engine: float32), float16 on
    ascend310p, which has no bfloat16. xllm has no such flag."""

    limit_images_per_prompt: int = Field(default=4, ge=0, le=256)
    """Most images one request may carry."""

    args: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*$")], EngineArgValue] = Field(default_factory=dict)
    """Further engine options by their command-line name without dashes (e.g. max-num-seqs: 256),
    checked against the engine's known options."""

    extra_args: list[str] = Field(default_factory=list, max_length=128)
    """Arguments passed to the engine verbatim, unchecked (for options vlmr1 does not know yet)."""


class ReplicaRange(ApiModel):
    """Replica bounds and the current count (the scale subresource)."""

    min: int = Field(default=1, ge=0, le=1000)
    """Fewest replicas."""

    max: int = Field(default=1, ge=1, le=1000)
    """Most replicas."""

    count: int | None = Field(default=None, ge=0, le=1000)
    """Desired replicas (kubectl scale writes it; the autoscaler too). Unset: min."""

    @cel_rule(rule="self.min <= self.max", message="replicas.min must not exceed replicas.max", field_path=".min")
    def _ordered(self) -> bool:
        return self.min <= self.max

    @cel_rule(
        rule="!has(self.count) || (self.count >= self.min && self.count <= self.max)",
        message="replicas.count must lie between replicas.min and replicas.max",
        field_path=".count",
    )
    def _count_in_range(self) -> bool:
        return self.count is None or self.min <= self.count <= self.max


class PrometheusSource(ApiModel):
    """Read throughput from a Prometheus server."""

    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=512)
    """Prometheus base URL, e.g. http://prometheus.monitoring:9090."""


class MetricsSource(ApiModel):
    """Where measured throughput comes from."""

    prometheus: PrometheusSource | None = None
    """Query Prometheus's HTTP API. Unset: the operator scrapes the pods' metrics endpoints."""


class AutoscalingSpec(ApiModel):
    """Scale replicas on measured generated tokens per second."""

    target_tokens_per_second_per_replica: float = Field(gt=0)
    """Generated tokens per second one replica should carry."""

    scale_up_stabilization_seconds: int = Field(default=0, ge=0, le=3600)
    """Scale up only as far as the lowest recommendation of this window, so load must last this
    long to add replicas (0: react at once), as the Kubernetes HPA does."""

    scale_down_stabilization_seconds: int = Field(default=300, ge=0, le=86400)
    """Scale down only to the highest recommendation of this window, so bursts do not flap."""

    evaluation_period_seconds: int = Field(default=15, ge=1, le=3600)
    """How often throughput is measured and replicas recomputed."""

    metrics_source: MetricsSource = defaulted(MetricsSource)
    """Prometheus or direct pod scraping."""


class ServingResources(ApiModel):
    """Accelerators and placement of each replica."""

    accelerator: ServingAccelerator = "nvidia"
    """nvidia, ascend (Atlas A2/A3), ascend310p (Atlas 300I Duo: vllm-ascend only, float16, eager
    by default) or cpu. Devices are requested under the resource name the operator's settings give
    the kind (nvidia.com/gpu, huawei.com/Ascend910, huawei.com/Ascend310P by default)."""

    devices_per_replica: int = Field(default=1, ge=0, le=64)
    """Accelerator devices per replica (0 with cpu)."""

    cpu: Quantity | None = None
    """CPU request and limit per replica."""

    memory: Quantity | None = None
    """Memory request and limit per replica."""

    shared_memory: Quantity = "8Gi"
    """Size of /dev/shm for the engine's worker processes."""

    node_selector: LabelMap = Field(default_factory=dict)
    """Node labels the pods must match."""

    tolerations: list[Toleration] = Field(default_factory=list, max_length=64)
    """Taints the pods tolerate."""

    @cel_rule(
        rule="self.accelerator != 'cpu' || self.devicesPerReplica == 0",
        message="devicesPerReplica must be 0 with accelerator cpu",
        field_path=".devicesPerReplica",
    )
    def _no_devices_on_cpu(self) -> bool:
        return self.accelerator != "cpu" or self.devices_per_replica == 0

    @cel_rule(
        rule="self.accelerator == 'cpu' || self.devicesPerReplica >= 1",
        message="devicesPerReplica must be at least 1 with an accelerator other than cpu",
        field_path=".devicesPerReplica",
    )
    def _devices_on_accelerators(self) -> bool:
        return self.accelerator == "cpu" or self.devices_per_replica >= 1


class ServingSecrets(ApiModel):
    """Credentials the serving pods need to fetch the checkpoint, by reference only."""

    hub_token: SecretKeyRef | None = None
    """Hugging Face hub token (becomes HF_TOKEN) for an `hf://` model that is gated or private."""

    object_store: SecretRef | None = None
    """Secret with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and optionally AWS_ENDPOINT_URL,
    AWS_REGION) for an `s3://` model uri, loaded with envFrom. Unset, the pod has only what its
    node or service account gives (e.g. IRSA on EKS)."""


class VLMServiceSpec(ApiModel):
    """A served model."""

    model: ServedModel
    """The checkpoint to serve."""

    engine: EngineSpec = defaulted(EngineSpec)
    """Inference engine."""

    resources: ServingResources = defaulted(ServingResources)
    """Accelerators and placement per replica."""

    replicas: ReplicaRange = defaulted(ReplicaRange)
    """Replica bounds and count."""

    autoscaling: AutoscalingSpec | None = None
    """Throughput-based autoscaling. Unset: replicas.count (or min) replicas, fixed."""

    image: str | None = Field(default=None, max_length=512)
    """Serving image. Unset: the operator's default for the engine."""

    port: int = Field(default=8000, ge=1, le=65535)
    """Port of the OpenAI-compatible HTTP API."""

    secrets: ServingSecrets | None = None
    """Credentials for fetching the checkpoint (hub token, object store)."""

    @cel_rule(rule=_engine_accelerator_cel(), message=_engine_accelerator_message(), field_path=".engine.name")
    def _engine_fits_accelerator(self) -> bool:
        return self.resources.accelerator in ENGINE_ACCELERATORS[self.engine.name]

    @cel_rule(
        rule="self.resources.accelerator != 'ascend310p' || !has(self.engine.dtype) || self.engine.dtype == 'float16'",
        message="the Atlas 300I Duo (ascend310p) has no bfloat16 and vllm-ascend runs it in float16 only: "
        "remove engine.dtype (vlmr1 passes --dtype float16) or set it to float16",
        field_path=".engine.dtype",
    )
    def _310p_float16(self) -> bool:
        return self.resources.accelerator != "ascend310p" or self.engine.dtype in (None, "float16")

    @cel_rule(
        rule="self.resources.accelerator != 'ascend310p' || !has(self.engine.extraArgs) || "
        "!self.engine.extraArgs.exists(a, a == '--dtype' || a.startsWith('--dtype='))",
        message="on ascend310p the dtype is checked: set engine.dtype (float16) instead of --dtype in engine.extraArgs",
        field_path=".engine.extraArgs",
    )
    def _310p_dtype_checked(self) -> bool:
        return self.resources.accelerator != "ascend310p" or not any(
            a == "--dtype" or a.startswith("--dtype=") for a in self.engine.extra_args
        )

    @cel_rule(
        rule="self.resources.accelerator != 'ascend310p' || has(self.engine.maxModelLen)",
        message="set engine.maxModelLen on ascend310p: vllm-ascend's 310P attention sizes its masks from the "
        "context length, and the model's own (often 32k-128k) runs the 300I Duo out of memory",
        field_path=".engine.maxModelLen",
    )
    def _310p_context_bound(self) -> bool:
        return self.resources.accelerator != "ascend310p" or self.engine.max_model_len is not None

    @cel_rule(
        rule="self.resources.accelerator == 'cpu'"
        " || self.engine.tensorParallelSize <= self.resources.devicesPerReplica",
        message="engine.tensorParallelSize must not exceed resources.devicesPerReplica",
        field_path=".engine.tensorParallelSize",
    )
    def _tp_fits_devices(self) -> bool:
        return (
            self.resources.accelerator == "cpu"
            or self.engine.tensor_parallel_size <= self.resources.devices_per_replica
        )

    @cel_rule(
        rule="!has(self.autoscaling) || self.replicas.min < self.replicas.max",
        message="autoscaling needs room to scale: make replicas.max larger than replicas.min, or remove autoscaling",
        field_path=".replicas.max",
    )
    def _autoscaling_has_range(self) -> bool:
        return self.autoscaling is None or self.replicas.min < self.replicas.max


class ServedDigest(ApiModel):
    """How many ready replicas serve one model digest (two during a rollout)."""

    digest: str
    """Checkpoint manifest digest."""

    replicas: int = Field(ge=0)
    """Ready replicas serving it."""


class Throughput(ApiModel):
    """Measured load."""

    tokens_per_second: float = 0.0
    """Generated tokens per second over all replicas."""

    tokens_per_second_per_replica: float = 0.0
    """Generated tokens per second per ready replica."""

    waiting_requests: float = 0.0
    """Requests queued in the engines."""

    measured_at: datetime | None = None
    """When it was measured."""


class VLMServiceStatus(ApiModel):
    """Observed state of a VLMService, written by the operator."""

    phase: VLMServicePhase = "Pending"
    """Pending, Progressing (rolling out or scaling), Ready or Failed."""

    conditions: list[Condition] = Field(default_factory=list)
    """ModelResolved (the checkpoint to serve is known) and Ready (every desired replica serves
    it); Invalid and Failed while the operator rejects the spec."""

    observed_generation: int | None = None
    """metadata.generation this status describes."""

    replicas: int = 0
    """Current replicas (the scale subresource's status)."""

    ready_replicas: int = 0
    """Replicas ready to serve."""

    selector: str | None = None
    """Label selector of the pods (for the scale subresource and HPA)."""

    model: str | None = None
    """The model being served, short form (uri and digest prefix)."""

    model_digest: str | None = None
    """Digest of the checkpoint the spec asks for (resolved for fromJob)."""

    served_digests: list[ServedDigest] = Field(default_factory=list)
    """Digests served right now and by how many replicas."""

    throughput: Throughput | None = None
    """Latest measured load."""

    endpoint: str | None = None
    """OpenAI-compatible base URL inside the cluster."""

    last_scale_time: datetime | None = None
    """When the autoscaler last changed replicas."""


class VLMServiceMeta(ObjectMeta):
    """Object metadata; the name also names the Deployment and Service."""

    name: DnsLabel(63, "the Service of the same name needs a DNS label")  # type: ignore[valid-type]
    """Service name: a DNS label of at most 63 characters."""


class VLMService(ApiModel):
    """A vision-language model served by vLLM, xllm, vllm-ascend or transformers."""

    api_version: Literal["vlmr1.io/v1alpha1"] = "vlmr1.io/v1alpha1"
    """Always vlmr1.io/v1alpha1."""

    kind: Literal["VLMService"] = "VLMService"
    """Always VLMService."""

    metadata: VLMServiceMeta
    """Standard object metadata."""

    spec: VLMServiceSpec
    """Desired service."""

    status: VLMServiceStatus | None = None
    """Observed state (written by the operator)."""
