"""VLMService builder: golden YAML for every example, and the serving contract.

Regenerate golden files after an intended change with
    VLMR1_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/vlmr1_operator/test_vlmservice_builder.py
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from vlmr1_core.api.manifest import load_manifest
from vlmr1_core.api.vlmservice import Engine, VLMService
from vlmr1_operator.builders import build_vlmservice
from vlmr1_operator.builders.common import to_yaml
from vlmr1_operator.builders.vlmservice import endpoint
from vlmr1_operator.settings import HcclSettings, OperatorSettings

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
SERVICES = sorted((REPO / "examples").glob("vlmservice-*.yaml"))


def load(path: Path, **spec: Any) -> VLMService:
    svc = load_manifest(path, VLMService)
    assert isinstance(svc, VLMService)
    data = svc.model_dump(by_alias=True, exclude_none=True)
    data["metadata"]["uid"] = f"uid-{svc.metadata.name}"
    data["spec"].update(spec)
    return VLMService.model_validate(data)


def kind(objs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(o for o in objs if o["kind"] == name)


@pytest.mark.parametrize("path", SERVICES, ids=lambda p: p.name)
def test_golden(path: Path, golden: Callable[[Path, str], None]) -> None:
    golden(GOLDEN / path.name, to_yaml(build_vlmservice(load(path), OperatorSettings())))


@pytest.mark.parametrize("path", SERVICES, ids=lambda p: p.name)
def test_zero_downtime_rollout_pinned_to_the_digest(path: Path) -> None:
    svc = load(path)
    deployment = kind(build_vlmservice(svc, OperatorSettings()), "Deployment")
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["vlmr1.io/model-digest"] == svc.spec.model.digest
    other = load(path, model={**svc.spec.model.to_yaml_dict(), "digest": "sha256:" + "f" * 64})
    other_template = kind(build_vlmservice(other, OperatorSettings()), "Deployment")["spec"]["template"]
    assert other_template != deployment["spec"]["template"], "a new digest must change the pod template (a rollout)"


def test_device_resource_names_are_the_clusters_choice() -> None:
    settings = OperatorSettings.from_env(
        {"VLMR1_OPERATOR_DEVICE_RESOURCES": '{"nvidia": "nvidia.com/gpu", "ascend": "huawei.com/Ascend910B"}'}
    )
    deployment = kind(build_vlmservice(load(REPO / "examples" / "vlmservice-xllm-ascend.yaml"), settings), "Deployment")
    limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["huawei.com/Ascend910B"] == "1" and "huawei.com/Ascend910" not in limits


def test_atlas_300i_duo_replica() -> None:
    """310P devices under their own resource name (MindCluster's, or the CCE preset), the
    vllm-ascend 310P image, the driver group; partial settings keep the other kinds' names."""
    svc = load(REPO / "examples" / "vlmservice-vllm-ascend-310p.yaml")
    pod = kind(build_vlmservice(svc, OperatorSettings()), "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["huawei.com/Ascend310P"] == "1"
    assert container["image"] == OperatorSettings().serving_images["vllm-ascend-310p"]
    assert container["image"] != OperatorSettings().serving_images["vllm-ascend"]
    assert pod["securityContext"]["supplementalGroups"] == [OperatorSettings().ascend_driver_gid]
    cce = OperatorSettings.from_env({"VLMR1_OPERATOR_DEVICE_RESOURCES": '{"ascend310p": "huawei.com/ascend-310"}'})
    assert cce.device_resources["ascend"] == "huawei.com/Ascend910"  # kept, not dropped
    pod = kind(build_vlmservice(svc, cce), "Deployment")["spec"]["template"]["spec"]
    limits = pod["containers"][0]["resources"]["limits"]
    assert limits["huawei.com/ascend-310"] == "1" and "huawei.com/Ascend310P" not in limits


def test_multi_device_ascend_replicas_get_the_hccl_contract() -> None:
    """An engine spread over several NPUs joins them with HCCL: the same environment as training
    pods; a one-device replica needs none of it."""
    one = load(REPO / "examples" / "vlmservice-xllm-ascend.yaml")
    names = [
        e["name"]
        for e in kind(build_vlmservice(one, OperatorSettings()), "Deployment")["spec"]["template"]["spec"][
            "containers"
        ][0]["env"]
    ]
    assert not [n for n in names if n.startswith("HCCL_")]
    four = load(
        REPO / "examples" / "vlmservice-xllm-ascend.yaml",
        engine={"name": "xllm", "tensorParallelSize": 4},
        resources={"accelerator": "ascend", "devicesPerReplica": 4},
    )
    settings = OperatorSettings(hccl=HcclSettings(socket_ifname="eth0", connect_timeout_seconds=300))
    env = kind(build_vlmservice(four, settings), "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    by_name = {e["name"]: e.get("value", e.get("valueFrom")) for e in env}
    assert by_name["HCCL_IF_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert (by_name["HCCL_SOCKET_IFNAME"], by_name["HCCL_CONNECT_TIMEOUT"]) == ("eth0", "300")


def pod_spec(svc: VLMService) -> dict[str, Any]:
    spec: dict[str, Any] = kind(build_vlmservice(svc, OperatorSettings()), "Deployment")["spec"]["template"]["spec"]
    return spec


def test_secrets_reach_the_serving_container_by_reference() -> None:
    secrets = {"hubToken": {"name": "hub", "key": "token"}, "objectStore": {"name": "s3-credentials"}}
    svc = load(REPO / "examples" / "vlmservice-vllm.yaml", secrets=secrets)
    (container,) = pod_spec(svc)["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    hf = [e for e in container["env"] if e["name"] == "HF_TOKEN"]
    assert hf == [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hub", "key": "token"}}}]
    bare = load(REPO / "examples" / "vlmservice-vllm.yaml")
    (container,) = pod_spec(bare)["containers"]
    assert "envFrom" not in container and all(e["name"] != "HF_TOKEN" for e in container["env"])


def test_every_engine_has_a_default_image() -> None:
    assert set(get_args(Engine)) <= set(OperatorSettings().serving_images)


def test_accelerator_resources_and_probes() -> None:
    vllm = kind(build_vlmservice(load(REPO / "examples" / "vlmservice-vllm.yaml"), OperatorSettings()), "Deployment")
    container = vllm["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 1800
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert vllm["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    xllm = kind(
        build_vlmservice(load(REPO / "examples" / "vlmservice-xllm-ascend.yaml"), OperatorSettings()), "Deployment"
    )
    xc = xllm["spec"]["template"]["spec"]["containers"][0]
    assert xc["resources"]["limits"]["huawei.com/Ascend910"] == "1"
    security = xllm["spec"]["template"]["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True and security["supplementalGroups"] == [1000]
    assert xllm["spec"]["replicas"] == 2  # replicas.min when no count is set
    cpu = kind(build_vlmservice(load(REPO / "examples" / "vlmservice-dev-cpu.yaml"), OperatorSettings()), "Deployment")
    limits = cpu["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "2", "memory": "8Gi"}


def test_spec_config_map_is_what_the_serving_image_reads() -> None:
    svc = load(REPO / "examples" / "vlmservice-vllm.yaml")
    cm = kind(build_vlmservice(svc, OperatorSettings()), "ConfigMap")
    assert yaml.safe_load(cm["data"]["vlmservice.yaml"]) == svc.spec.to_yaml_dict()


def test_unresolved_job_reference_is_refused() -> None:
    svc = load(REPO / "examples" / "vlmservice-dev-cpu.yaml", model={"fromJob": {"name": "rec-shapes-tiny-local"}})
    with pytest.raises(ValueError, match=r"resolve model\.fromJob"):
        build_vlmservice(svc, OperatorSettings())


def test_scale_count_sets_replicas_and_endpoint() -> None:
    svc = load(REPO / "examples" / "vlmservice-vllm.yaml", replicas={"min": 1, "max": 4, "count": 3})
    assert kind(build_vlmservice(svc, OperatorSettings()), "Deployment")["spec"]["replicas"] == 3
    assert endpoint(svc) == "http://rec-qwen25vl-3b.default.svc:8000/v1"
