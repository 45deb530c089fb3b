"""Operator settings: what a cluster administrator configures (Helm values -> environment).

Builders receive a settings object and never read the environment themselves, so
they stay pure and testable; `OperatorSettings.from_env()` is called once at start-up.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from itertools import pairwise
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from vlmr1_core.accelerators import DEVICE_RESOURCE, Accelerator, ServingAccelerator
from vlmr1_core.apimodel import ApiModel, defaulted
from vlmr1_core.uri import DEFAULT_PVC_ROOT
from vlmr1_operator.throughput import DEFAULT_TOKENS_QUERY, DEFAULT_WAITING_QUERY

ENV_PREFIX = "VLMR1_OPERATOR_"

ServingImageKey = Literal["vllm", "xllm", "vllm-ascend", "vllm-ascend-310p", "transformers"]
"""An engine, or an engine build for one device: vllm-ascend has a separate build (CANN
kernels, no triton) for the Atlas 300I Duo."""

DEFAULT_SERVING_IMAGES: dict[ServingImageKey, str] = {
    "vllm": "vlmr1/serving:0.1.0-vllm",
    "xllm": "vlmr1/serving:0.1.0-xllm",
    "vllm-ascend": "vlmr1/serving:0.1.0-vllm-ascend",
    "vllm-ascend-310p": "vlmr1/serving:0.1.0-vllm-ascend-310p",
    "transformers": "vlmr1/serving:0.1.0-transformers",
}

#: Name of the kopf peering object (ClusterKopfPeering, or KopfPeering per watched namespace)
#: the operator's replicas coordinate through; the chart and `vlmr1 dev cluster` create it.
PEERING_NAME = "vlmr1"

DEFAULT_TRAINER_IMAGES: dict[Accelerator, str] = {
    "nvidia": "vlmr1/trainer:0.1.0-cuda",
    "ascend": "vlmr1/trainer:0.1.0-ascend",
    "cpu": "vlmr1/trainer:0.1.0-cpu",
}


#: HCCL_HOST_SOCKET_PORT_RANGE / HCCL_NPU_SOCKET_PORT_RANGE syntax: ``auto`` or ports and
#: ranges separated by commas (CANN's environment variable reference).
PORT_LIST_PATTERN = r"^(auto|[0-9]{1,5}(-[0-9]{1,5})?(,[0-9]{1,5}(-[0-9]{1,5})?)*)$"


def _check_port_list(value: str | None) -> str | None:
    """Ports 1024..65535, each range ascending, no two items overlapping (CANN refuses overlaps)."""
    if value is None or value == "auto":
        return value
    spans: list[tuple[int, int]] = []
    for item in value.split(","):
        lo, _, hi = item.partition("-")
        span = (int(lo), int(hi or lo))
        if not 1024 <= span[0] <= span[1] <= 65535:
            raise ValueError(f"{item!r}: ports must lie in 1024-65535 (below 1024 is reserved), low end first")
        spans.append(span)
    spans.sort()
    for (_, end), (start, _) in pairwise(spans):
        if start <= end:
            raise ValueError(f"{value!r}: the ports and ranges overlap; HCCL refuses overlapping items")
    return value


class HcclSettings(ApiModel):
    """What HCCL needs to form a group across pods (CANN's HCCL environment variables).

    Every pod gets HCCL_IF_IP = its own pod IP (downward API): the host-side address HCCL uses
    for rendezvous is then the one the pod network routes, whatever the node's interfaces.
    """

    socket_ifname: str | None = Field(default=None, max_length=256)
    """HCCL_SOCKET_IFNAME, e.g. ``eth0`` or ``=eth0`` (exact name). Unset: left out; CANN ranks
    HCCL_IF_IP above it anyway, so it matters only for tools that ignore HCCL_IF_IP."""

    gloo_socket_ifname: str | None = Field(default=None, max_length=256)
    """GLOO_SOCKET_IFNAME: the interface torch's gloo groups (CPU-side barriers, object
    collectives) bind to. Unset: gloo resolves the pod's hostname, which is its pod IP."""

    connect_timeout_seconds: int = Field(default=1200, ge=120, le=7200)
    """HCCL_CONNECT_TIMEOUT: how long ranks wait for each other while the group forms (CANN's
    range 120-7200 s, its default 120). 1200 s covers ranks whose pods start minutes apart
    (image pulls, weights loading before the first collective)."""

    exec_timeout_seconds: int = Field(default=1800, ge=68, le=17340)
    """HCCL_EXEC_TIMEOUT: how long a collective waits for a slow rank (CANN's range 68-17340 s,
    rounded down to a multiple of 68). Rank 0 alone saving a large checkpoint must fit in it."""

    if_base_port: int | None = Field(default=None, ge=1024, le=65520)
    """HCCL_IF_BASE_PORT: first host port of the block HCCL listens on for rendezvous (16 or
    32 ports, by CANN version). Unset: CANN's 60000; set it where that block is taken."""

    host_socket_port_range: str | None = Field(default=None, pattern=PORT_LIST_PATTERN, max_length=512)
    """HCCL_HOST_SOCKET_PORT_RANGE: host-side ports, e.g. ``60000-60050``, ``60000,60100-60120`` or
    ``auto`` (the OS picks). Unset: CANN's default. Plan at least one port per HCCL process."""

    npu_socket_port_range: str | None = Field(default=None, pattern=PORT_LIST_PATTERN, max_length=512)
    """HCCL_NPU_SOCKET_PORT_RANGE: device-side ports, same syntax (CANN's default: 16666).
    Needed when several processes share an NPU; not with MC2 fused operators on Atlas A2."""

    _ports = field_validator("host_socket_port_range", "npu_socket_port_range")(_check_port_list)


class OperatorSettings(ApiModel):
    """Cluster-wide defaults of the operator."""

    trainer_images: dict[Accelerator, str] = Field(default_factory=lambda: dict(DEFAULT_TRAINER_IMAGES))
    """Trainer image per accelerator, used when a GRPOJob names none."""

    serving_images: dict[ServingImageKey, str] = Field(default_factory=lambda: dict(DEFAULT_SERVING_IMAGES))
    """Serving image per engine (vllm-ascend-310p: vllm-ascend on the Atlas 300I Duo), used when a
    VLMService names none. A partial mapping keeps the defaults of the engines it leaves out."""

    device_resources: dict[ServingAccelerator, str] = Field(default_factory=lambda: dict(DEVICE_RESOURCE))
    """Extended resource name the cluster's device plugin gives each accelerator kind's devices
    (defaults: NVIDIA's nvidia.com/gpu and MindCluster's huawei.com/Ascend910 and
    huawei.com/Ascend310P); pods request their devices by it. A partial mapping keeps the defaults
    of the kinds it leaves out. Presets for other plugins (Huawei Cloud CCE, HAMi) are in
    docs/ascend.md."""

    serving_metrics_port: int = Field(default=9500, ge=1, le=65535)
    """Port of the serving image's uniform metrics endpoint (vlmr1_serving_*)."""

    prometheus_tokens_query: str = DEFAULT_TOKENS_QUERY
    """PromQL for a VLMService's generated tokens/s ({namespace} and {service} filled in)."""

    prometheus_waiting_query: str = DEFAULT_WAITING_QUERY
    """PromQL for a VLMService's queued requests ({namespace} and {service} filled in)."""

    image_pull_policy: str = "IfNotPresent"
    """Pull policy of the generated containers."""

    master_port: int = Field(default=29500, ge=1, le=65535)
    """Port of the torch.distributed rendezvous on the master pod."""

    trainer_metrics_port: int = Field(default=9400, ge=1, le=65535)
    """Port where a trainer's rank 0 serves Prometheus metrics (progress and checkpoints)."""

    progress_poll_seconds: float = Field(default=15.0, gt=0)
    """How often a running job is reconciled and its trainer's progress read."""

    retry_seconds: float = Field(default=5.0, gt=0)
    """When an object whose reconcile failed (an API error) is reconciled again; doubles with
    each failure in a row, up to max_retry_seconds."""

    max_retry_seconds: float = Field(default=300.0, gt=0)
    """The longest wait before retrying a failed reconcile."""

    resync_seconds: float = Field(default=300.0, gt=0)
    """How often every object is reconciled once whatever its due time (in case a watch event
    was lost), and state kept for deleted objects is pruned."""

    pvc_root: str = DEFAULT_PVC_ROOT
    """Where `pvc://claim/path` uris are mounted in pods (claim at <root>/<claim>)."""

    config_path: str = "/etc/vlmr1"
    """Where the rendered TrainerConfig is mounted in trainer pods."""

    extra_reward_names: list[str] = Field(default_factory=list)
    """Reward names a custom trainer image registers beyond vlmr1's own (accepted in specs)."""

    ascend_driver_gid: int = Field(default=1000, ge=0)
    """Group of the Ascend driver's device files (HwHiAiUser); serving pods on Ascend join it."""

    hccl: HcclSettings = defaulted(HcclSettings)
    """The HCCL contract of pods whose ranks talk over HCCL: Ascend training pods, and serving
    replicas on Ascend that span several devices (VLMR1_OPERATOR_HCCL, JSON)."""

    ascend_driver_host_mounts: bool = False
    """Mount the Ascend driver from the node (hostPath, read-only: driver/lib64, version.info,
    dcmi, npu-smi, ascend_install.info) into Ascend pods, for clusters whose nodes do not run the
    Ascend Docker Runtime, which otherwise injects them. Off by default: hostPath volumes are
    refused by the baseline and restricted Pod Security levels."""

    run_as_user: int = Field(default=1000, ge=1)
    """UID the generated pods run as (non-root)."""

    @field_validator("device_resources", "serving_images", "trainer_images", mode="before")
    @classmethod
    def _keep_defaults(cls, value: object, info: ValidationInfo) -> object:
        # A chart or environment naming only some kinds must not drop the others': a replica on
        # a kind without a device name would request no device and schedule anywhere.
        every: dict[str, Mapping[Any, str]] = {
            "device_resources": DEVICE_RESOURCE,
            "serving_images": DEFAULT_SERVING_IMAGES,
            "trainer_images": DEFAULT_TRAINER_IMAGES,
        }
        defaults = every[str(info.field_name)]
        return {**defaults, **value} if isinstance(value, dict) else value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorSettings:
        """Settings from VLMR1_OPERATOR_<FIELD> variables (JSON for maps), defaults otherwise."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name, field in cls.model_fields.items():
            raw = environ.get(ENV_PREFIX + name.upper())
            if raw is None:
                continue
            values[name] = json.loads(raw) if field.annotation is not str and raw[:1] in "{[" else raw
        return cls.model_validate(values)
