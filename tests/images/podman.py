"""Podman for the image tests: the images of tests/tools/build-images.sh, and a pod's container
run the way a kubelet would run it.

`pod_run_argv` turns a Pod spec that the operator's builders (or the chart) produce into a
`podman run` command line: the container's command and environment, its user and fsGroup,
dropped capabilities, no privilege escalation, a read-only root filesystem where the pod asks
for one, and its volumes (ConfigMaps written to folders and mounted read-only, emptyDirs as
fresh folders owned by the fsGroup, the memory emptyDir at /dev/shm as --shm-size, claims as
host folders). The tests therefore run each image under the security context and environment
the operator really gives its pods, not a hand-written approximation of them.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tests" / "tools" / "build-images.sh"
BUILD_TIMEOUT = 3600
"""Seconds for a cold build (base + three images, torch and transformers downloaded)."""


@dataclass
class Podman:
    """`podman` with the build script's storage and settings (containers.conf, storage.conf)."""

    conf: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CONTAINERS_CONF": str(self.conf / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.conf / "storage.conf"),
        }

    def __call__(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}")
        return result

    def inspect(self, image: str) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(self("image", "inspect", image).stdout)
        return data[0]

    def python_in(self, image: str, code: str, *, user: str | None = None) -> Any:
        """Run `python -c code` in a throwaway container of `image`; its stdout parsed as JSON."""
        args = ["run", "--rm", "--network", "none", "--entrypoint", "python"]
        if user:
            args += ["--user", user]
        out = self(*args, image, "-c", code).stdout
        return json.loads(out)


def build_images(timeout: float = BUILD_TIMEOUT) -> Podman:
    """Build (or find cached) the images; a clear failure when they cannot be had."""
    result = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT.relative_to(REPO)} failed:\n{result.stderr[-6000:]}")
    return Podman(Path(result.stdout.strip().splitlines()[-1]))


@dataclass
class PodFolders:
    """Host folders standing in for a pod's volumes."""

    root: Path
    config_maps: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """ConfigMap name -> its data (file name -> content)."""
    claims: Mapping[str, Path] = field(default_factory=dict)
    """PersistentVolumeClaim name -> the host folder that backs it."""


def _cpu_cores(quantity: str) -> int:
    """A CPU quantity in whole cores, rounded up like the downward API's divisor 1."""
    if quantity.endswith("m"):
        return max(1, math.ceil(int(quantity[:-1]) / 1000))
    return max(1, math.ceil(float(quantity)))


def _memory_bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)


def pod_run_argv(
    pod: Mapping[str, Any],
    folders: PodFolders,
    *,
    name: str,
    hosts: Sequence[str] = (),
    pod_ip: str = "127.0.0.1",
) -> list[str]:
    """`podman run` arguments (after `podman`) for the pod's first container, detached."""
    spec = pod["spec"]
    (container,) = spec["containers"]
    pod_sec = spec.get("securityContext") or {}
    sec = container.get("securityContext") or {}
    uid = sec.get("runAsUser", pod_sec.get("runAsUser"))
    gid = sec.get("runAsGroup", pod_sec.get("runAsGroup", uid))
    non_root = sec.get("runAsNonRoot", pod_sec.get("runAsNonRoot"))
    if non_root and (uid is None or uid == 0):
        raise ValueError(f"{name}: runAsNonRoot without a non-zero runAsUser")
    fs_group = pod_sec.get("fsGroup")
    argv = ["run", "--detach", "--name", name, "--network", "host", "--pull", "never"]
    if uid is not None:
        argv += ["--user", f"{uid}:{gid}"]
    if fs_group is not None:
        argv += ["--group-add", str(fs_group)]
    for group in pod_sec.get("supplementalGroups") or []:
        argv += ["--group-add", str(group)]
    if "ALL" in ((sec.get("capabilities") or {}).get("drop") or []):
        argv += ["--cap-drop", "all"]
    if sec.get("allowPrivilegeEscalation") is False:
        argv += ["--security-opt", "no-new-privileges"]
    if sec.get("readOnlyRootFilesystem"):
        # No tmpfs on /tmp, /run, /var/tmp beyond the pod's own volumes: a kubelet adds none.
        argv += ["--read-only", "--read-only-tmpfs=false"]
    for host_name in hosts:
        argv += ["--add-host", f"{host_name}:{pod_ip}"]

    limits = (container.get("resources") or {}).get("limits") or {}
    for var in container.get("env") or []:
        argv += ["--env", f"{var['name']}={_env_value(var, limits, pod_ip)}"]

    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        volume = volumes[mount["name"]]
        target = mount["mountPath"]
        read_only = bool(mount.get("readOnly"))
        if "configMap" in volume:
            data = folders.config_maps[volume["configMap"]["name"]]
            host = folders.root / "configmaps" / mount["name"]
            host.mkdir(parents=True, exist_ok=True)
            for file_name, content in data.items():
                (host / file_name).write_text(content, encoding="utf-8")
            argv += ["--volume", f"{host}:{target}:ro"]
        elif "emptyDir" in volume and volume["emptyDir"].get("medium") == "Memory" and target == "/dev/shm":
            size = volume["emptyDir"].get("sizeLimit")
            argv += ["--shm-size", str(_memory_bytes(size)) if size else "64m"]
        elif "emptyDir" in volume:
            host = folders.root / "emptydirs" / mount["name"]
            _fs_group_folder(host, fs_group)
            argv += ["--volume", f"{host}:{target}"]
        elif "persistentVolumeClaim" in volume:
            host = folders.claims[volume["persistentVolumeClaim"]["claimName"]]
            argv += ["--volume", f"{host}:{target}:{'ro' if read_only else 'rw'}"]
        else:
            raise ValueError(f"{name}: volume {mount['name']} of a kind these tests do not provide: {volume}")

    command = container.get("command")
    if command:
        argv += ["--entrypoint", json.dumps(command[:1])]
    argv.append(container["image"])
    if command:
        argv += command[1:]
    argv += container.get("args") or []
    return argv


def _env_value(var: Mapping[str, Any], limits: Mapping[str, str], pod_ip: str) -> str:
    if "value" in var:
        return str(var["value"])
    source = var.get("valueFrom") or {}
    if "resourceFieldRef" in source and source["resourceFieldRef"]["resource"] == "limits.cpu":
        return str(_cpu_cores(limits.get("cpu", str(os.cpu_count() or 1))))
    if "fieldRef" in source and source["fieldRef"]["fieldPath"] == "status.podIP":
        return pod_ip
    raise ValueError(f"env {var['name']}: a source these tests do not provide: {source}")


def _fs_group_folder(path: Path, fs_group: int | None) -> None:
    """An emptyDir as a kubelet makes it with an fsGroup: group-owned, group-writable, setgid."""
    path.mkdir(parents=True, exist_ok=True)
    if fs_group is not None:
        os.chown(path, 0, fs_group)
        path.chmod(0o2775)
    else:
        path.chmod(0o777)


def claim_folder(path: Path, fs_group: int) -> Path:
    """A writable claim's folder, owned by the pods' fsGroup as a volume with fsGroup is."""
    _fs_group_folder(path, fs_group)
    return path


def logs(podman: Podman, name: str) -> str:
    result = podman("logs", name, check=False)
    return result.stdout + result.stderr


def wait_exit(podman: Podman, name: str, timeout: float) -> int:
    """The container's exit status (podman wait blocks until it exits)."""
    result = podman("wait", name, timeout=timeout)
    return int(result.stdout.strip().splitlines()[-1])


def remove(podman: Podman, name: str) -> None:
    podman("rm", "--force", "--time", "10", name, check=False, timeout=60)
