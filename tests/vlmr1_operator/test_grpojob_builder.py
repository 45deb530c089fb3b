"""GRPOJob builder: golden YAML for every example, and the contract each child must meet.

Regenerate the golden files after an intended change with
    VLMR1_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/vlmr1_operator/test_grpojob_builder.py
and review the diff.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from vlmr1_core.api.grpojob import GRPOJob
from vlmr1_core.api.manifest import load_manifest
from vlmr1_operator.builders import build_grpojob
from vlmr1_operator.builders.ascend import DRIVER_PATHS
from vlmr1_operator.builders.common import merge, to_yaml
from vlmr1_operator.settings import HcclSettings, OperatorSettings

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
JOBS = sorted((REPO / "examples").glob("grpojob-*.yaml"))


def load_job(path: Path, **spec_overrides: Any) -> GRPOJob:
    job = load_manifest(path, GRPOJob)
    assert isinstance(job, GRPOJob)
    data = job.model_dump(by_alias=True, exclude_none=True)
    data["metadata"]["uid"] = f"uid-{job.metadata.name}"
    data["spec"] = merge(data["spec"], spec_overrides)
    return GRPOJob.model_validate(data)


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def env_of(pod: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in pod["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_golden(path: Path, golden: Callable[[Path, str], None]) -> None:
    golden(GOLDEN / path.name, to_yaml(build_grpojob(load_job(path), OperatorSettings())))


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_torchrun_contract_and_ownership(path: Path) -> None:
    job = load_job(path)
    res = job.spec.resources
    objs = build_grpojob(job, OperatorSettings())
    pods = by_kind(objs, "Pod")
    assert [p["metadata"]["name"] for p in pods] == [f"{job.metadata.name}-node-{i}" for i in range(res.nodes)]
    assert len(by_kind(objs, "Service")) == res.nodes
    for rank, pod in enumerate(pods):
        env = env_of(pod)
        assert env["MASTER_ADDR"] == f"{job.metadata.name}-node-0.default.svc"
        assert env["NODE_RANK"] == str(rank)
        assert env["NNODES"] == str(res.nodes)
        assert env["NPROC_PER_NODE"] == str(res.processes_per_node)
        assert env["WORLD_SIZE"] == str(res.nodes * res.processes_per_node)
        assert pod["metadata"]["labels"]["vlmr1.io/role"] == ("master" if rank == 0 else "worker")
        assert pod["spec"]["restartPolicy"] == "Never"
    for obj in objs:
        (owner,) = obj["metadata"]["ownerReferences"]
        assert owner == {
            "apiVersion": "vlmr1.io/v1alpha1",
            "kind": "GRPOJob",
            "name": job.metadata.name,
            "uid": f"uid-{job.metadata.name}",
            "controller": True,
            "blockOwnerDeletion": True,
        }
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == job.metadata.name


def test_config_map_holds_the_trainer_config_with_defaults_filled() -> None:
    job = load_job(REPO / "examples" / "grpojob-rec.yaml")
    (cm,) = by_kind(build_grpojob(job, OperatorSettings()), "ConfigMap")
    config = yaml.safe_load(cm["data"]["config.yaml"])
    assert "resources" not in config and "runPolicy" not in config
    assert config["grpo"]["maxCompletionLength"] == 256
    assert config["model"]["uri"] == "hf://Qwen/Qwen2.5-VL-3B-Instruct"


def test_accelerator_resources_and_backends() -> None:
    path = REPO / "examples" / "grpojob-rec.yaml"
    cases = {
        "nvidia": ("nvidia.com/gpu", "nccl"),
        "ascend": ("huawei.com/Ascend910", "hccl"),
        "cpu": (None, "gloo"),
    }
    for accel, (resource, backend) in cases.items():
        job = load_job(path, resources={"accelerator": accel, "processesPerNode": 2, "nodes": 4})
        pod = by_kind(build_grpojob(job, OperatorSettings()), "Pod")[0]
        limits = pod["spec"]["containers"][0]["resources"]["limits"]
        devices = {k: v for k, v in limits.items() if k not in ("cpu", "memory")}
        assert devices == ({resource: "2"} if resource else {}), accel
        assert env_of(pod)["VLMR1_DIST_BACKEND"] == backend
        assert pod["spec"]["containers"][0]["image"] == OperatorSettings().trainer_images[accel]  # type: ignore[index]


def test_device_resource_names_are_the_clusters_choice() -> None:
    """A CCE or HAMi cluster names its NPUs differently; the settings' name is requested."""
    job = load_job(REPO / "examples" / "grpojob-rec.yaml", resources={"accelerator": "ascend", "nodes": 2})
    settings = OperatorSettings(device_resources={"nvidia": "nvidia.com/gpu", "ascend": "huawei.com/ascend-1980"})
    for pod in by_kind(build_grpojob(job, settings), "Pod"):
        resources = pod["spec"]["containers"][0]["resources"]
        assert "huawei.com/Ascend910" not in resources["limits"]
        assert resources["limits"]["huawei.com/ascend-1980"] == resources["requests"]["huawei.com/ascend-1980"]


def test_ascend_hccl_contract() -> None:
    """HCCL_IF_IP is each pod's own IP; timeouts always, interface names and ports from the
    settings where the cluster set them; none of it outside Ascend."""
    path = REPO / "examples" / "grpojob-rec.yaml"
    job = load_job(path, resources={"accelerator": "ascend", "nodes": 2})
    for pod in by_kind(build_grpojob(job, OperatorSettings()), "Pod"):
        env = pod["spec"]["containers"][0]["env"]
        (if_ip,) = [e for e in env if e["name"] == "HCCL_IF_IP"]
        assert if_ip["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
        assert (env_of(pod)["HCCL_CONNECT_TIMEOUT"], env_of(pod)["HCCL_EXEC_TIMEOUT"]) == ("1200", "1800")
        unset = {"HCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "HCCL_IF_BASE_PORT", "HCCL_HOST_SOCKET_PORT_RANGE"}
        assert not unset & {e["name"] for e in env}
    hccl = HcclSettings(
        socket_ifname="eth0",
        gloo_socket_ifname="eth1",
        connect_timeout_seconds=600,
        exec_timeout_seconds=3400,
        if_base_port=50000,
        host_socket_port_range="60000-60050",
        npu_socket_port_range="auto",
    )
    pod = by_kind(build_grpojob(job, OperatorSettings(hccl=hccl)), "Pod")[1]
    assert {k: v for k, v in env_of(pod).items() if k.startswith(("HCCL_", "GLOO_")) and k != "HCCL_IF_IP"} == {
        "HCCL_WHITELIST_DISABLE": "1",
        "HCCL_CONNECT_TIMEOUT": "600",
        "HCCL_EXEC_TIMEOUT": "3400",
        "HCCL_SOCKET_IFNAME": "eth0",
        "GLOO_SOCKET_IFNAME": "eth1",
        "HCCL_IF_BASE_PORT": "50000",
        "HCCL_HOST_SOCKET_PORT_RANGE": "60000-60050",
        "HCCL_NPU_SOCKET_PORT_RANGE": "auto",
    }
    assert pod["spec"]["securityContext"]["supplementalGroups"] == [OperatorSettings().ascend_driver_gid]
    nvidia = by_kind(build_grpojob(load_job(path), OperatorSettings(hccl=hccl)), "Pod")[0]
    assert not [e for e in nvidia["spec"]["containers"][0]["env"] if e["name"].startswith(("HCCL_", "GLOO_"))]
    assert "supplementalGroups" not in nvidia["spec"]["securityContext"]


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("npuSocketPortRange", "61000-61050,61040", "overlap"),
        ("hostSocketPortRange", "80-90", "1024-65535"),
        ("hostSocketPortRange", "60050-60000", "low end first"),
        ("hostSocketPortRange", "60000-", "should match pattern"),
        ("connectTimeoutSeconds", 60, "greater than or equal to 120"),
        ("ifBasePort", 65530, "less than or equal to 65520"),
    ],
)
def test_hccl_settings_refuse_what_cann_refuses(field: str, value: object, problem: str) -> None:
    with pytest.raises(ValidationError) as err:
        OperatorSettings.model_validate({"hccl": {field: value}})
    assert problem in str(err.value)


def test_driver_host_mounts_are_off_by_default_and_read_only_when_on() -> None:
    job = load_job(REPO / "examples" / "grpojob-rec-ascend.yaml")
    off = by_kind(build_grpojob(job, OperatorSettings()), "Pod")[0]
    assert not [v for v in off["spec"]["volumes"] if "hostPath" in v]
    on = by_kind(build_grpojob(job, OperatorSettings(ascend_driver_host_mounts=True)), "Pod")[0]
    host = {v["name"]: v["hostPath"]["path"] for v in on["spec"]["volumes"] if "hostPath" in v}
    assert host == {name: path for name, path, _ in DRIVER_PATHS}
    mounts = {m["name"]: m for m in on["spec"]["containers"][0]["volumeMounts"] if m["name"] in host}
    assert {m["mountPath"] for m in mounts.values()} == set(host.values())
    assert all(m["readOnly"] for m in mounts.values())
    nvidia = by_kind(
        build_grpojob(
            load_job(REPO / "examples" / "grpojob-rec.yaml"), OperatorSettings(ascend_driver_host_mounts=True)
        ),
        "Pod",
    )[0]
    assert not [v for v in nvidia["spec"]["volumes"] if "hostPath" in v]


def test_devices_per_node_is_requested_not_processes() -> None:
    job = load_job(REPO / "examples" / "grpojob-gui.yaml", resources={"processesPerNode": 2, "devicesPerNode": 4})
    pod = by_kind(build_grpojob(job, OperatorSettings()), "Pod")[0]
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert env_of(pod)["NPROC_PER_NODE"] == "2"


def test_pods_are_locked_down() -> None:
    job = load_job(REPO / "examples" / "grpojob-rec.yaml")
    pod = by_kind(build_grpojob(job, OperatorSettings()), "Pod")[0]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["spec"]["containers"][0]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_pvc_claims_are_mounted_read_only_except_checkpoints() -> None:
    job = load_job(REPO / "examples" / "grpojob-rec.yaml")
    pod = by_kind(build_grpojob(job, OperatorSettings()), "Pod")[0]
    claims = {
        v["persistentVolumeClaim"]["claimName"]: v["persistentVolumeClaim"]["readOnly"]
        for v in pod["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"vlmr1-data": True, "vlmr1-checkpoints": False}
    mounts = {m["mountPath"] for m in pod["spec"]["containers"][0]["volumeMounts"]}
    assert {"/mnt/pvc/vlmr1-data", "/mnt/pvc/vlmr1-checkpoints", "/dev/shm", "/etc/vlmr1"} <= mounts


def test_secrets_only_by_reference() -> None:
    job = load_job(REPO / "examples" / "grpojob-ovd.yaml", secrets={"hubToken": {"name": "hf", "key": "token"}})
    pod = by_kind(build_grpojob(job, OperatorSettings()), "Pod")[0]
    container = pod["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    assert env_of(pod)["HF_TOKEN"] == {"secretKeyRef": {"name": "hf", "key": "token"}}


def test_gang_scheduling_makes_a_pod_group() -> None:
    job = load_job(REPO / "examples" / "grpojob-rec-ascend.yaml")
    objs = build_grpojob(job, OperatorSettings())
    (group,) = by_kind(objs, "PodGroup")
    assert group["spec"]["minMember"] == 2
    for pod in by_kind(objs, "Pod"):
        assert pod["spec"]["schedulerName"] == "volcano"
        assert pod["metadata"]["annotations"]["scheduling.k8s.io/group-name"] == group["metadata"]["name"]
    plain = build_grpojob(load_job(REPO / "examples" / "grpojob-rec.yaml"), OperatorSettings())
    assert by_kind(plain, "PodGroup") == []


def test_pod_template_override_merges_by_name() -> None:
    override = {
        "metadata": {"annotations": {"team": "vision"}},
        "spec": {
            "priorityClassName": "training",
            "containers": [
                {"name": "trainer", "env": [{"name": "NCCL_DEBUG", "value": "INFO"}]},
                {"name": "sidecar", "image": "busybox"},
            ],
        },
    }
    job = load_job(REPO / "examples" / "grpojob-rec.yaml", podTemplate=override)
    pod = by_kind(build_grpojob(job, OperatorSettings()), "Pod")[0]
    assert pod["metadata"]["annotations"]["team"] == "vision"
    assert "vlmr1.io/spec-hash" in pod["metadata"]["annotations"]
    assert pod["spec"]["priorityClassName"] == "training"
    assert [c["name"] for c in pod["spec"]["containers"]] == ["trainer", "sidecar"]
    assert env_of(pod)["NCCL_DEBUG"] == "INFO"
    assert env_of(pod)["MASTER_PORT"] == "29500"  # the generated env survives the merge


def test_restart_generation_labels_the_pods() -> None:
    job = load_job(REPO / "examples" / "grpojob-rec.yaml")
    pod = by_kind(build_grpojob(job, OperatorSettings(), restart=3), "Pod")[0]
    assert pod["metadata"]["labels"]["vlmr1.io/restart"] == "3"
    assert env_of(pod)["VLMR1_RESTART"] == "3"


def test_builders_are_pure() -> None:
    job = load_job(REPO / "examples" / "grpojob-math.yaml")
    before = job.model_dump()
    assert build_grpojob(job, OperatorSettings()) == build_grpojob(job, OperatorSettings())
    assert job.model_dump() == before


def test_settings_from_env() -> None:
    settings = OperatorSettings.from_env(
        {"VLMR1_OPERATOR_MASTER_PORT": "23456", "VLMR1_OPERATOR_TRAINER_IMAGES": '{"cpu": "x:1"}'}
    )
    assert settings.master_port == 23456
    # A partial map replaces the kinds it names and keeps the others' defaults.
    assert settings.trainer_images == {**OperatorSettings().trainer_images, "cpu": "x:1"}
    assert settings.trainer_images["cpu"] != OperatorSettings().trainer_images["cpu"]


def volume_of(pod: dict[str, Any], mount_path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the volume, its mount) mounted at `mount_path` in the trainer container."""
    (mount,) = [m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["mountPath"] == mount_path]
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    return volume, mount


@pytest.mark.parametrize(
    ("reward_code", "accelerator", "mount_path", "volume", "pythonpath", "source"),
    [
        (
            {"configMap": "my-rewards"}, "nvidia", "/opt/vlmr1/reward-code",
            {"configMap": {"name": "my-rewards"}}, "/opt/vlmr1/reward-code", "configmap/my-rewards",
        ),
        (
            {"uri": "pvc://team-code/rewards/v2"}, "nvidia", "/mnt/pvc/team-code",
            {"persistentVolumeClaim": {"claimName": "team-code", "readOnly": True}},
            "/mnt/pvc/team-code/rewards/v2", "pvc://team-code/rewards/v2",
        ),
        (
            {"uri": "pvc://team-code"}, "cpu", "/mnt/pvc/team-code",
            {"persistentVolumeClaim": {"claimName": "team-code", "readOnly": True}},
            "/mnt/pvc/team-code", "pvc://team-code",
        ),
        # The Ascend image's PYTHONPATH holds CANN's packages: left alone (the trainer adds the folder).
        (
            {"configMap": "my-rewards"}, "ascend", "/opt/vlmr1/reward-code",
            {"configMap": {"name": "my-rewards"}}, None, "configmap/my-rewards",
        ),
    ],
)  # fmt: skip
def test_reward_code_is_mounted_read_only_on_the_import_path(
    reward_code: dict[str, str],
    accelerator: str,
    mount_path: str,
    volume: dict[str, Any],
    pythonpath: str | None,
    source: str,
) -> None:
    job = load_job(
        REPO / "examples" / "grpojob-rec.yaml",
        rewardCode=reward_code,
        resources={"accelerator": accelerator, "nodes": 2},
    )
    pods = by_kind(build_grpojob(job, OperatorSettings()), "Pod")
    assert len(pods) == 2
    for pod in pods:
        got_volume, mount = volume_of(pod, mount_path)
        assert {k: v for k, v in got_volume.items() if k != "name"} == volume
        assert mount["readOnly"] is True
        assert env_of(pod).get("PYTHONPATH") == pythonpath
        assert pod["metadata"]["annotations"]["vlmr1.io/reward-code"] == source


def test_reward_code_on_the_checkpoint_claim_keeps_it_writable() -> None:
    job = load_job(REPO / "examples" / "grpojob-rec.yaml", rewardCode={"uri": "pvc://vlmr1-checkpoints/code"})
    pod = by_kind(build_grpojob(job, OperatorSettings(pvc_root="/data")), "Pod")[0]
    volume, mount = volume_of(pod, "/data/vlmr1-checkpoints")
    assert volume["persistentVolumeClaim"]["readOnly"] is False and mount["readOnly"] is False
    assert env_of(pod)["PYTHONPATH"] == "/data/vlmr1-checkpoints/code"


def test_no_reward_code_no_mount_no_pythonpath() -> None:
    pod = by_kind(build_grpojob(load_job(REPO / "examples" / "grpojob-rec.yaml"), OperatorSettings()), "Pod")[0]
    assert "PYTHONPATH" not in env_of(pod)
    assert "vlmr1.io/reward-code" not in pod["metadata"]["annotations"]
    assert all(m["mountPath"] != "/opt/vlmr1/reward-code" for m in pod["spec"]["containers"][0]["volumeMounts"])


def test_remote_reward_tokens_come_from_their_secrets() -> None:
    remote = {"url": "http://judge:8000/score", "authSecret": {"name": "judge-token", "key": "token"}}
    rewards = [
        {"name": "rec_iou"},
        {"name": "judge", "remote": remote},
        {"name": "sandbox", "remote": {"url": "http://sandbox:8000/run"}},  # no token: no variable
    ]
    job = load_job(REPO / "examples" / "grpojob-rec.yaml", rewards=rewards)
    for pod in by_kind(build_grpojob(job, OperatorSettings()), "Pod"):
        env = env_of(pod)
        assert env["VLMR1_REWARD_AUTH_JUDGE"] == {"secretKeyRef": {"name": "judge-token", "key": "token"}}
        assert not [name for name in env if name.startswith("VLMR1_REWARD_AUTH_") and name != "VLMR1_REWARD_AUTH_JUDGE"]


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_every_pod_knows_its_cpu_limit(path: Path) -> None:
    """The trainer sizes its reward-scoring pool from the pod's CPU limit (the downward API)."""
    for pod in by_kind(build_grpojob(load_job(path), OperatorSettings()), "Pod"):
        assert env_of(pod)["VLMR1_CPU_LIMIT"] == {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1"}}
