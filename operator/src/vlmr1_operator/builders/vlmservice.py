"""VLMService -> ConfigMap (the spec the serving image reads), Deployment, Service, PodDisruptionBudget.

The model is pinned by digest: the digest is in the pod template's annotations, so a
new digest rolls the Deployment, and maxUnavailable 0 keeps every old replica serving
until a new one is ready (the serving image verifies the checkpoint before the engine
starts, so a replica that is ready serves exactly that digest).
"""

from __future__ import annotations

from typing import Any

import yaml

from vlmr1_core.accelerators import ASCEND_KINDS
from vlmr1_core.api.vlmservice import VLMService, VLMServiceSpec
from vlmr1_core.uri import pvc_claim
from vlmr1_operator.builders.ascend import driver_volumes, hccl_env
from vlmr1_operator.builders.common import (
    Manifest,
    container_resources,
    labels,
    metadata,
    owner_reference,
    quantity,
    secret_env,
)
from vlmr1_operator.settings import OperatorSettings, ServingImageKey

CONTAINER = "engine"
SPEC_FILE = "vlmservice.yaml"
SCRATCH = "/var/lib/vlmr1"
LABEL_SERVICE = "vlmr1.io/service-name"
DIGEST_ANNOTATION = "vlmr1.io/model-digest"

#: Seconds a replica may take to load its model before the startup probe gives up.
MODEL_LOAD_ALLOWANCE = 1800
PROBE_PERIOD = 10


def serving_image_key(spec: VLMServiceSpec) -> ServingImageKey:
    """Which default serving image a spec runs: its engine's, or the 310P build of vllm-ascend."""
    if spec.engine.name == "vllm-ascend" and spec.resources.accelerator == "ascend310p":
        return "vllm-ascend-310p"
    return spec.engine.name


def build_vlmservice(svc: VLMService, settings: OperatorSettings) -> list[Manifest]:
    """Every child of a VLMService whose model is resolved (model.uri and model.digest set)."""
    if svc.spec.model.uri is None or svc.spec.model.digest is None:
        raise ValueError(f"VLMService {svc.metadata.name}: resolve model.fromJob to a uri and digest first")
    return [build_config_map(svc), build_deployment(svc, settings), build_service(svc, settings), build_pdb(svc)]


def endpoint(svc: VLMService) -> str:
    """The OpenAI-compatible base URL inside the cluster."""
    return f"http://{svc.metadata.name}.{svc.metadata.namespace or 'default'}.svc:{svc.spec.port}/v1"


def _ids(svc: VLMService) -> tuple[str, str, dict[str, Any], dict[str, str]]:
    name = svc.metadata.name
    owner = owner_reference("VLMService", name, svc.metadata.uid or "")
    return name, svc.metadata.namespace or "default", owner, {LABEL_SERVICE: name}


def build_config_map(svc: VLMService) -> Manifest:
    name, namespace, owner, selector = _ids(svc)
    spec = yaml.safe_dump(svc.spec.to_yaml_dict(), sort_keys=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(f"{name}-spec", namespace, labels(name, "serving-config", **selector), owner),
        "data": {SPEC_FILE: spec},
    }


def build_deployment(svc: VLMService, settings: OperatorSettings) -> Manifest:
    name, namespace, owner, selector = _ids(svc)
    spec, res = svc.spec, svc.spec.resources
    pod_labels = labels(name, "serving", **selector)
    volumes: list[dict[str, Any]] = [
        {"name": "spec", "configMap": {"name": f"{name}-spec"}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": quantity(res.shared_memory)}},
        {"name": "scratch", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "spec", "mountPath": settings.config_path, "readOnly": True},
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "scratch", "mountPath": SCRATCH},
    ]
    claim = pvc_claim(spec.model.uri) if spec.model.uri else None
    if claim:
        volumes.append({"name": "model", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        mounts.append({"name": "model", "mountPath": f"{settings.pvc_root}/{claim}", "readOnly": True})
    health = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": PROBE_PERIOD}
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image or settings.serving_images[serving_image_key(spec)],
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "vlmr1_serving", "--spec", f"{settings.config_path}/{SPEC_FILE}"],
        "env": [
            # The served model name defaults to the VLMService's name (the spec does not repeat it).
            {"name": "VLMR1_SERVICE_NAME", "value": name},
            {"name": "VLMR1_PVC_ROOT", "value": settings.pvc_root},
            {"name": "VLMR1_CACHE_DIR", "value": f"{SCRATCH}/cache"},
            {"name": "HF_HOME", "value": f"{SCRATCH}/hf"},
            {"name": "VLMR1_SERVING_PORT", "value": str(spec.port)},
            {"name": "VLMR1_SERVING_METRICS_PORT", "value": str(settings.serving_metrics_port)},
        ],
        "ports": [
            {"name": "http", "containerPort": spec.port},
            {"name": "metrics", "containerPort": settings.serving_metrics_port},
        ],
        "resources": container_resources(
            res.cpu, res.memory, res.accelerator, res.devices_per_replica, settings.device_resources
        ),
        "volumeMounts": mounts,
        # Loading a large model takes minutes: the startup probe allows for it, then the
        # readiness probe takes over (a replica gets traffic only once it serves).
        "startupProbe": {**health, "failureThreshold": MODEL_LOAD_ALLOWANCE // PROBE_PERIOD},
        "readinessProbe": {**health, "failureThreshold": 3},
        "livenessProbe": {**health, "failureThreshold": 6},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if spec.secrets:
        env, env_from = secret_env(spec.secrets.hub_token, spec.secrets.object_store)
        container["env"] += env
        if env_from:
            container["envFrom"] = env_from
    pod_security: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": settings.run_as_user,
        "fsGroup": settings.run_as_user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if res.accelerator in ASCEND_KINDS:
        # The Ascend driver's device files belong to its HwHiAiUser group: join it, stay non-root.
        pod_security["supplementalGroups"] = [settings.ascend_driver_gid]
        driver, driver_mounts = driver_volumes(settings)
        volumes += driver
        mounts += driver_mounts
        if spec.engine.tensor_parallel_size > 1:
            # The engine's processes, one per NPU, form an HCCL group inside the pod.
            container["env"] += hccl_env(settings.hccl)
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "securityContext": pod_security,
        "enableServiceLinks": False,
    }
    if res.node_selector:
        pod_spec["nodeSelector"] = dict(res.node_selector)
    if res.tolerations:
        pod_spec["tolerations"] = [t.to_yaml_dict() for t in res.tolerations]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, namespace, labels(name, "serving", **selector), owner),
        "spec": {
            "replicas": spec.replicas.count if spec.replicas.count is not None else spec.replicas.min,
            "selector": {"matchLabels": dict(selector)},
            # Zero downtime: a new replica must be ready before an old one goes.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": {DIGEST_ANNOTATION: spec.model.digest or ""}},
                "spec": pod_spec,
            },
        },
    }


def build_service(svc: VLMService, settings: OperatorSettings) -> Manifest:
    name, namespace, owner, selector = _ids(svc)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, namespace, labels(name, "serving", **selector), owner),
        "spec": {
            "selector": dict(selector),
            "ports": [
                {"name": "http", "port": svc.spec.port, "targetPort": "http"},
                {"name": "metrics", "port": settings.serving_metrics_port, "targetPort": "metrics"},
            ],
        },
    }


def build_pdb(svc: VLMService) -> Manifest:
    """At most one replica down for voluntary disruptions (node drains), never blocking them."""
    name, namespace, owner, selector = _ids(svc)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(name, namespace, labels(name, "serving", **selector), owner),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(selector)}},
    }
