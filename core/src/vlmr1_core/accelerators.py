"""The accelerator vocabulary every process agrees on: kinds, collective backends, devices.

The operator writes the kind into a GRPOJob's pods and the collective backend into
``VLMR1_DIST_BACKEND``; the trainer picks its torch device and backend from the same
tables, so the two cannot disagree about what ``ascend`` means.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["ACCELERATORS", "DEVICE_RESOURCE", "DIST_BACKEND", "Accelerator", "torch_device"]

Accelerator = Literal["nvidia", "ascend", "cpu"]
"""What a pod (or a local run) computes on."""

ACCELERATORS: tuple[Accelerator, ...] = get_args(Accelerator)

DIST_BACKEND: dict[Accelerator, str] = {"nvidia": "nccl", "ascend": "hccl", "cpu": "gloo"}
"""torch.distributed backend per accelerator."""

DEVICE_RESOURCE: dict[Accelerator, str] = {"nvidia": "nvidia.com/gpu", "ascend": "huawei.com/Ascend910"}
"""The Kubernetes extended resource a pod requests its devices by (the device plugins' names)."""


def torch_device(accelerator: Accelerator, local_rank: int = 0) -> str:
    """The torch device string of a process's own device (``cuda:1``, ``npu:0``, ``cpu``).

    >>> torch_device("ascend", 3)
    'npu:3'
    """
    return {"nvidia": f"cuda:{local_rank}", "ascend": f"npu:{local_rank}", "cpu": "cpu"}[accelerator]
