"""The accelerator vocabulary every process agrees on: kinds, collective backends, devices.

The operator writes the kind into a GRPOJob's pods and the collective backend into
``VLMR1_DIST_BACKEND``; the trainer picks its torch device and backend from the same
tables, so the two cannot disagree about what ``ascend`` means.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "ACCELERATORS",
    "ASCEND_KINDS",
    "DEVICE_RESOURCE",
    "DIST_BACKEND",
    "SERVING_ACCELERATORS",
    "Accelerator",
    "ServingAccelerator",
    "torch_device",
]

Accelerator = Literal["nvidia", "ascend", "cpu"]
"""What a training pod (or a local run) computes on: ``ascend`` is the Atlas A2/A3 generation
(910B/910C), which trains with torch_npu and HCCL."""

ServingAccelerator = Literal["nvidia", "ascend", "ascend310p", "cpu"]
"""What a serving replica computes on: the training kinds plus ``ascend310p``, the Atlas 300I
Duo inference card (Ascend 310P: float16 only, no collective training stack), which only
vllm-ascend serves on."""

ACCELERATORS: tuple[Accelerator, ...] = get_args(Accelerator)
SERVING_ACCELERATORS: tuple[ServingAccelerator, ...] = get_args(ServingAccelerator)

ASCEND_KINDS: frozenset[ServingAccelerator] = frozenset({"ascend", "ascend310p"})
"""Kinds whose devices are Ascend NPUs (CANN driver files, the HwHiAiUser group)."""

DIST_BACKEND: dict[Accelerator, str] = {"nvidia": "nccl", "ascend": "hccl", "cpu": "gloo"}
"""torch.distributed backend per accelerator."""

DEVICE_RESOURCE: dict[ServingAccelerator, str] = {
    "nvidia": "nvidia.com/gpu",
    "ascend": "huawei.com/Ascend910",
    "ascend310p": "huawei.com/Ascend310P",
}
"""The Kubernetes extended resource a pod requests its devices by: the default names, NVIDIA's
device plugin and Huawei MindCluster's. The operator's ``deviceResources`` setting replaces them
for clusters whose plugin names devices otherwise (docs/ascend.md lists the presets)."""


def torch_device(accelerator: Accelerator, local_rank: int = 0) -> str:
    """The torch device string of a process's own device (``cuda:1``, ``npu:0``, ``cpu``).

    >>> torch_device("ascend", 3)
    'npu:3'
    """
    return {"nvidia": f"cuda:{local_rank}", "ascend": f"npu:{local_rank}", "cpu": "cpu"}[accelerator]
