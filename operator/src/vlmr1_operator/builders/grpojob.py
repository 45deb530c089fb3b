"""GRPOJob -> ConfigMap + one headless Service and one Pod per node (+ a Volcano PodGroup).

The pods follow the torchrun contract the trainer's entry point reads (MASTER_ADDR,
MASTER_PORT, NNODES, NODE_RANK, NPROC_PER_NODE, WORLD_SIZE), like Kubeflow's PyTorchJob:
node 0 is the master, each pod has a stable DNS name through its own headless Service.
Pods never restart in place (restartPolicy Never): a lost rank cannot rejoin an
NCCL/HCCL group, so the operator recreates the whole gang from the last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml

from vlmr1_core.accelerators import DIST_BACKEND, Accelerator
from vlmr1_core.api.grpojob import GRPOJob
from vlmr1_core.reward_config import REWARD_CODE_MOUNT, auth_env_var
from vlmr1_core.uri import parse_uri, pvc_claim
from vlmr1_operator.builders.ascend import driver_volumes, hccl_env
from vlmr1_operator.builders.common import (
    LABEL_INDEX,
    LABEL_JOB,
    LABEL_RESTART,
    LABEL_ROLE,
    Manifest,
    container_resources,
    labels,
    merge,
    metadata,
    owner_reference,
    quantity,
    secret_env,
)
from vlmr1_operator.settings import OperatorSettings

CONTAINER = "trainer"
CONFIG_FILE = "config.yaml"
SCRATCH = "/var/lib/vlmr1"
VOLCANO_GROUP_ANNOTATION = "scheduling.k8s.io/group-name"
#: Hash of the spec a pod was built from: a running gang with another hash is restarted.
SPEC_HASH_ANNOTATION = "vlmr1.io/spec-hash"
#: Where the job's reward code comes from (configmap/NAME or the uri), for `kubectl describe pod`.
REWARD_CODE_ANNOTATION = "vlmr1.io/reward-code"

#: Collective-communication settings per accelerator. Async error handling makes a
#: rank whose peer died fail fast, so the gang restart starts at once instead of
#: after the collective timeout.
COMM_ENV: dict[Accelerator, dict[str, str]] = {
    "nvidia": {
        "VLMR1_DIST_BACKEND": DIST_BACKEND["nvidia"],
        "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",
        "NCCL_DEBUG": "WARN",
    },
    "ascend": {
        "VLMR1_DIST_BACKEND": DIST_BACKEND["ascend"],
        # Timeouts, interfaces and ports come from the operator's HCCL settings (builders.ascend).
        "HCCL_WHITELIST_DISABLE": "1",
        "TORCH_DEVICE_BACKEND_AUTOLOAD": "1",
    },
    "cpu": {"VLMR1_DIST_BACKEND": DIST_BACKEND["cpu"]},
}


def node_name(job: str, index: int) -> str:
    """Pod and Service name of node `index` (0 is the master)."""
    return f"{job}-node-{index}"


def spec_hash(job: GRPOJob) -> str:
    """Hash of everything that shapes the pods; runPolicy is left out (it applies in place)."""
    shaping = job.spec.model_dump(mode="json", by_alias=True, exclude={"run_policy"})
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def config_map_name(job: str) -> str:
    return f"{job}-config"


def build_grpojob(job: GRPOJob, settings: OperatorSettings, restart: int = 0) -> list[Manifest]:
    """Every child of a GRPOJob; `restart` is the gang generation (status.restarts)."""
    objs = [build_config_map(job, settings)]
    objs += [build_service(job, i, settings) for i in range(job.spec.resources.nodes)]
    objs += [build_pod(job, i, settings, restart) for i in range(job.spec.resources.nodes)]
    if job.spec.resources.gang_scheduling:
        objs.append(build_pod_group(job))
    return objs


def _ids(job: GRPOJob) -> tuple[str, str, dict[str, Any]]:
    name = job.metadata.name
    namespace = job.metadata.namespace or "default"
    owner = owner_reference("GRPOJob", name, job.metadata.uid or "")
    return name, namespace, owner


def build_config_map(job: GRPOJob, settings: OperatorSettings) -> Manifest:
    """The TrainerConfig the pods read, with task defaults filled in (what actually runs)."""
    name, namespace, owner = _ids(job)
    config = yaml.safe_dump(job.spec.trainer_view().to_yaml_dict(), sort_keys=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(config_map_name(name), namespace, labels(name, "config", **{LABEL_JOB: name}), owner),
        "data": {CONFIG_FILE: config},
    }


def build_service(job: GRPOJob, index: int, settings: OperatorSettings) -> Manifest:
    """A headless Service per pod: a stable DNS name for the rendezvous, whatever the pod IP."""
    name, namespace, owner = _ids(job)
    selector = {LABEL_JOB: name, LABEL_INDEX: str(index)}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(node_name(name, index), namespace, labels(name, "trainer", **selector), owner),
        "spec": {
            "clusterIP": "None",
            "selector": selector,
            # The master's address must resolve before its pod is ready, or the workers'
            # rendezvous fails during start-up.
            "publishNotReadyAddresses": True,
            "ports": [{"name": "rendezvous", "port": settings.master_port, "targetPort": settings.master_port}],
        },
    }


def build_pod(job: GRPOJob, index: int, settings: OperatorSettings, restart: int = 0) -> Manifest:
    name, namespace, owner = _ids(job)
    spec = job.spec
    res = spec.resources
    role = "master" if index == 0 else "worker"
    pod_labels = labels(
        name, "trainer", **{LABEL_JOB: name, LABEL_INDEX: str(index), LABEL_ROLE: role, LABEL_RESTART: str(restart)}
    )
    volumes, mounts = _volumes(job, settings)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": res.image or settings.trainer_images[res.accelerator],
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "vlmr1_trainer", "--config", f"{settings.config_path}/{CONFIG_FILE}"],
        "env": _env(job, index, settings, namespace, restart),
        "ports": [
            {"name": "rendezvous", "containerPort": settings.master_port},
            {"name": "metrics", "containerPort": settings.trainer_metrics_port},
        ],
        "resources": container_resources(
            res.cpu, res.memory, res.accelerator, res.resolved_devices_per_node, settings.device_resources
        ),
        "volumeMounts": mounts,
        # A user error is one line on stderr and exit 2: the log's tail becomes the container's
        # termination message, which the operator puts in the Failed condition.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    # The namespace names the run in the experiment trackers (with VLMR1_JOB_NAME).
    container["env"].append({"name": "VLMR1_NAMESPACE", "value": namespace})
    # Whole Secrets as environment: object-store credentials, the trackers' endpoints and keys.
    if spec.secrets:
        _, env_from = secret_env(None, spec.secrets.object_store, spec.secrets.tracking)
        if env_from:
            container["envFrom"] = env_from
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "runAsGroup": settings.run_as_user,
            "fsGroup": settings.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "enableServiceLinks": False,
    }
    if res.accelerator == "ascend":
        # The driver's device files belong to its HwHiAiUser group: join it, stay non-root.
        pod_spec["securityContext"]["supplementalGroups"] = [settings.ascend_driver_gid]
    if res.node_selector:
        pod_spec["nodeSelector"] = dict(res.node_selector)
    if res.tolerations:
        pod_spec["tolerations"] = [t.to_yaml_dict() for t in res.tolerations]
    if res.scheduler_name:
        pod_spec["schedulerName"] = res.scheduler_name
    if spec.run_policy.active_deadline_seconds:
        pod_spec["activeDeadlineSeconds"] = spec.run_policy.active_deadline_seconds
    meta = metadata(node_name(name, index), namespace, pod_labels, owner)
    meta["annotations"] = {SPEC_HASH_ANNOTATION: spec_hash(job)}
    if spec.reward_code:
        code = spec.reward_code
        meta["annotations"][REWARD_CODE_ANNOTATION] = f"configmap/{code.config_map}" if code.config_map else code.uri
    if res.gang_scheduling:
        meta["annotations"][VOLCANO_GROUP_ANNOTATION] = name
    pod: Manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec}
    if spec.pod_template:
        pod = merge(pod, {k: v for k, v in spec.pod_template.items() if k in ("metadata", "spec")})
    return pod


def _env(job: GRPOJob, index: int, settings: OperatorSettings, namespace: str, restart: int) -> list[dict[str, Any]]:
    res = job.spec.resources
    name = job.metadata.name
    values = {
        "MASTER_ADDR": f"{node_name(name, 0)}.{namespace}.svc",
        "MASTER_PORT": str(settings.master_port),
        "NNODES": str(res.nodes),
        "NODE_RANK": str(index),
        "NPROC_PER_NODE": str(res.processes_per_node),
        "WORLD_SIZE": str(res.world_size),
        "VLMR1_ACCELERATOR": res.accelerator,
        "VLMR1_JOB_NAME": name,
        "VLMR1_RESTART": str(restart),
        "VLMR1_PVC_ROOT": settings.pvc_root,
        # Rank 0 serves progress and checkpoints here; the operator reads them into status.
        "VLMR1_METRICS_PORT": str(settings.trainer_metrics_port),
        "HF_HOME": f"{SCRATCH}/hf",
        # Pods run non-root; ~/.cache may not be writable. Builtin models and s3 downloads go here.
        "VLMR1_CACHE_DIR": f"{SCRATCH}/cache",
        **COMM_ENV[res.accelerator],
    }
    folder = reward_code_folder(job, settings)
    if folder is not None and res.accelerator != "ascend":
        # The trainer puts the folder on sys.path itself; PYTHONPATH also reaches whatever else
        # the pod runs (kubectl exec python). Not on Ascend: the image's PYTHONPATH holds CANN's
        # packages, which a pod's value would replace.
        values["PYTHONPATH"] = folder
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in values.items()]
    if res.accelerator == "ascend":
        env += hccl_env(settings.hccl)
    # The pod's CPU limit in whole cores (its node's CPUs when it has none): the trainer sizes
    # its reward-scoring pool from it.
    limit = {"resource": "limits.cpu", "divisor": "1"}
    env.append({"name": "VLMR1_CPU_LIMIT", "valueFrom": {"resourceFieldRef": limit}})
    if job.spec.secrets:
        env += secret_env(job.spec.secrets.hub_token)[0]
    # Each remote reward's token, in the variable the trainer reads for its label (a label named
    # twice reads one variable: the first secret given).
    tokens: dict[str, dict[str, str]] = {}
    for reward in job.spec.rewards:
        if reward.remote is not None and reward.remote.auth_secret is not None:
            secret = reward.remote.auth_secret
            tokens.setdefault(auth_env_var(reward.name), {"name": secret.name, "key": secret.key})
    env += [{"name": var, "valueFrom": {"secretKeyRef": ref}} for var, ref in tokens.items()]
    return env


def reward_code_folder(job: GRPOJob, settings: OperatorSettings) -> str | None:
    """Where the job's rewardCode is in its pods (the ConfigMap's mount, or the uri's folder under
    the claims' mount root), or None without rewardCode."""
    code = job.spec.reward_code
    if code is None:
        return None
    if code.config_map:
        return REWARD_CODE_MOUNT
    assert code.uri is not None  # exactly one of the two, by the spec's rule
    parsed = parse_uri(code.uri)
    if parsed.scheme != "pvc":
        return code.uri
    return "/".join(part for part in (settings.pvc_root, parsed.authority, parsed.path.strip("/")) if part)


def pvc_claims(job: GRPOJob) -> dict[str, bool]:
    """Claims named by pvc:// uris in the spec -> whether the pods write to it."""
    spec = job.spec
    uris = [spec.model.uri, *(d.jsonl for d in spec.datasets), *(d.image_root or "" for d in spec.datasets)]
    if spec.reward_code and spec.reward_code.uri:
        uris.append(spec.reward_code.uri)
    claims = {claim: False for u in uris if (claim := pvc_claim(u))}
    if spec.checkpoint.uri and (claim := pvc_claim(spec.checkpoint.uri)):
        claims[claim] = True
    return claims


def _volumes(job: GRPOJob, settings: OperatorSettings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    name = job.metadata.name
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": config_map_name(name)}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": quantity(job.spec.resources.shared_memory)}},
        {"name": "scratch", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": settings.config_path, "readOnly": True},
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "scratch", "mountPath": SCRATCH},
    ]
    for i, (claim, writable) in enumerate(sorted(pvc_claims(job).items())):
        volume = f"pvc-{i}"
        volumes.append({"name": volume, "persistentVolumeClaim": {"claimName": claim, "readOnly": not writable}})
        mounts.append({"name": volume, "mountPath": f"{settings.pvc_root}/{claim}", "readOnly": not writable})
    code = job.spec.reward_code
    if code and code.config_map:
        volumes.append({"name": "reward-code", "configMap": {"name": code.config_map}})
        mounts.append({"name": "reward-code", "mountPath": REWARD_CODE_MOUNT, "readOnly": True})
    if job.spec.resources.accelerator == "ascend":
        driver, driver_mounts = driver_volumes(settings)
        volumes += driver
        mounts += driver_mounts
    return volumes, mounts


def build_pod_group(job: GRPOJob) -> Manifest:
    """A Volcano PodGroup: the scheduler places all nodes of the gang or none."""
    name, namespace, owner = _ids(job)
    res = job.spec.resources
    return {
        "apiVersion": "scheduling.volcano.sh/v1beta1",
        "kind": "PodGroup",
        "metadata": metadata(name, namespace, labels(name, "trainer", **{LABEL_JOB: name}), owner),
        "spec": {"minMember": res.nodes},
    }
