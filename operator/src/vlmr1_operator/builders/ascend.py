"""What Ascend pods need beyond their devices: the HCCL contract and, optionally, the driver.

Both GRPOJob pods (ranks across nodes) and VLMService replicas that span several NPUs
(engine processes joined by HCCL inside the pod) take the same HCCL environment, so a
cluster's interface names, ports and timeouts are set once, in the operator's settings.
"""

from __future__ import annotations

from typing import Any

from vlmr1_operator.settings import HcclSettings, OperatorSettings

__all__ = ["DRIVER_PATHS", "driver_volumes", "hccl_env"]

#: Files of the node's Ascend driver that CANN in the image loads (the paths Huawei's and
#: vllm-ascend's container guides bind-mount), as (volume name, path, hostPath type).
DRIVER_PATHS: tuple[tuple[str, str, str], ...] = (
    ("ascend-driver-lib64", "/usr/local/Ascend/driver/lib64", "Directory"),
    ("ascend-driver-version", "/usr/local/Ascend/driver/version.info", "File"),
    ("ascend-dcmi", "/usr/local/dcmi", "Directory"),
    ("ascend-npu-smi", "/usr/local/bin/npu-smi", "File"),
    ("ascend-install-info", "/etc/ascend_install.info", "File"),
)


def hccl_env(hccl: HcclSettings) -> list[dict[str, Any]]:
    """HCCL's environment: timeouts always, interface names and ports where the cluster set them,
    and HCCL_IF_IP = the pod's own IP (the one address every CNI routes between pods)."""
    values: dict[str, str | int | None] = {
        "HCCL_CONNECT_TIMEOUT": hccl.connect_timeout_seconds,
        "HCCL_EXEC_TIMEOUT": hccl.exec_timeout_seconds,
        "HCCL_SOCKET_IFNAME": hccl.socket_ifname,
        "GLOO_SOCKET_IFNAME": hccl.gloo_socket_ifname,
        "HCCL_IF_BASE_PORT": hccl.if_base_port,
        "HCCL_HOST_SOCKET_PORT_RANGE": hccl.host_socket_port_range,
        "HCCL_NPU_SOCKET_PORT_RANGE": hccl.npu_socket_port_range,
    }
    env: list[dict[str, Any]] = [{"name": k, "value": str(v)} for k, v in values.items() if v is not None]
    env.append({"name": "HCCL_IF_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
    return env


def driver_volumes(settings: OperatorSettings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """hostPath volumes and read-only mounts of the node's driver, when the cluster asks for them
    (nodes without the Ascend Docker Runtime); ([], []) otherwise."""
    if not settings.ascend_driver_host_mounts:
        return [], []
    volumes = [{"name": name, "hostPath": {"path": path, "type": kind}} for name, path, kind in DRIVER_PATHS]
    mounts = [{"name": name, "mountPath": path, "readOnly": True} for name, path, _ in DRIVER_PATHS]
    return volumes, mounts
