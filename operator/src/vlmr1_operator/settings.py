"""Operator settings: what a cluster administrator configures (Helm values -> environment).

Builders receive a settings object and never read the environment themselves, so
they stay pure and testable; `OperatorSettings.from_env()` is called once at start-up.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from pydantic import Field

from vlmr1_core.accelerators import DEVICE_RESOURCE, Accelerator
from vlmr1_core.api.vlmservice import Engine
from vlmr1_core.apimodel import ApiModel
from vlmr1_core.uri import DEFAULT_PVC_ROOT
from vlmr1_operator.throughput import DEFAULT_TOKENS_QUERY, DEFAULT_WAITING_QUERY

ENV_PREFIX = "VLMR1_OPERATOR_"

DEFAULT_SERVING_IMAGES: dict[Engine, str] = {
    "vllm": "vlmr1/serving:0.1.0-vllm",
    "xllm": "vlmr1/serving:0.1.0-xllm",
    "vllm-ascend": "vlmr1/serving:0.1.0-vllm-ascend",
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


class OperatorSettings(ApiModel):
    """Cluster-wide defaults of the operator."""

    trainer_images: dict[Accelerator, str] = Field(default_factory=lambda: dict(DEFAULT_TRAINER_IMAGES))
    """Trainer image per accelerator, used when a GRPOJob names none."""

    serving_images: dict[Engine, str] = Field(default_factory=lambda: dict(DEFAULT_SERVING_IMAGES))
    """Serving image per engine, used when a VLMService names none."""

    device_resources: dict[Accelerator, str] = Field(default_factory=lambda: dict(DEVICE_RESOURCE))
    """Extended resource name the cluster's device plugin gives each accelerator kind's devices
    (defaults: NVIDIA's nvidia.com/gpu and MindCluster's huawei.com/Ascend910); pods request their
    devices by it. Presets for other plugins (Huawei Cloud CCE, HAMi) are in docs/operator.md."""

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

    hccl_socket_ifname: str | None = None
    """HCCL_SOCKET_IFNAME of Ascend training pods (e.g. ``=eth0``); unset, it is left out. The pods
    also get HCCL_IF_IP (their own IP), which CANN ranks above this name when choosing the host
    interface."""

    gloo_socket_ifname: str | None = None
    """GLOO_SOCKET_IFNAME of Ascend training pods: the interface torch's gloo groups bind to;
    unset lets gloo choose."""

    run_as_user: int = Field(default=1000, ge=1)
    """UID the generated pods run as (non-root)."""

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
