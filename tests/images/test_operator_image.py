"""The operator image runs `vlmr1 operator` as the chart deploys it and reconciles a GRPOJob.

The pod is the chart's own Deployment (`helm template`): uid/gid 1000, read-only root
filesystem with the chart's /tmp emptyDir, all capabilities dropped. What a kubelet would add
in a cluster, the service account's credentials, is replaced by the dev cluster's kubeconfig
(`vlmr1 dev cluster`: the real apiextensions-apiserver for GRPOJobs, a simulated core API for
pods). The operator in the container then turns examples/grpojob-rec.yaml into exactly the
children the builders make.
"""

from __future__ import annotations

import functools
import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from vlmr1_core.api.grpojob import GRPOJob
from vlmr1_operator.builders import build_grpojob
from vlmr1_operator.settings import OperatorSettings

from .podman import REPO, PodFolders, Podman, logs, pod_run_argv, remove

NS = "images"
INSTALL_HELM = REPO / "tests" / "tools" / "install-helm.sh"
KUBECONFIG_IN_POD = "/etc/vlmr1-test/kubeconfig"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, predicate: Callable[[], Any], timeout: float, on_fail: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{on_fail()}")


def chart_operator_pod(metrics_port: int, liveness_port: int) -> dict[str, Any]:
    """The operator pod of the chart's Deployment, rendered with free ports."""
    helm = subprocess.run(["bash", str(INSTALL_HELM)], capture_output=True, text=True, timeout=600)
    assert helm.returncode == 0, f"helm could not be installed:\n{helm.stderr}"
    rendered = subprocess.run(
        [helm.stdout.strip(), "template", "ops", str(REPO / "helm" / "vlmr1"), "--namespace", "vlmr1-system",
         "--kube-version", "1.37.0", "--show-only", "templates/deployment.yaml",
         "--set", f"metrics.port={metrics_port}", "--set", f"liveness.port={liveness_port}"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    deployment = yaml.safe_load(rendered.stdout)
    return {"apiVersion": "v1", "kind": "Pod", **deployment["spec"]["template"]}


@pytest.fixture(scope="module")
def cluster(control_plane: Any) -> Any:
    for crd in sorted((REPO / "crds").glob("*.yaml")):
        control_plane.kubectl("apply", "--server-side", "-f", str(crd))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/grpojobs.vlmr1.io")
    control_plane.kubectl("create", "namespace", NS, check=False)
    return control_plane


@pytest.fixture(scope="module")
def operator(podman: Podman, cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("operator-pod")
    metrics_port, liveness_port = free_port(), free_port()
    pod = chart_operator_pod(metrics_port, liveness_port)
    container = pod["spec"]["containers"][0]
    # The service account token a kubelet would mount: the dev cluster's kubeconfig instead.
    pod["spec"]["volumes"].append({"name": "kubeconfig", "configMap": {"name": "kubeconfig"}})
    container["volumeMounts"].append({"name": "kubeconfig", "mountPath": str(Path(KUBECONFIG_IN_POD).parent)})
    container["env"].append({"name": "KUBECONFIG", "value": KUBECONFIG_IN_POD})
    config_maps = {"kubeconfig": {"kubeconfig": Path(cluster.kubeconfig).read_text(encoding="utf-8")}}
    name = f"vlmr1-test-operator-{root.name}"
    argv = pod_run_argv(pod, PodFolders(root, config_maps), name=name)
    podman(*argv)

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{liveness_port}/healthz", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    try:
        wait_for("the operator's /healthz", healthy, 90, lambda: logs(podman, name)[-6000:])
        yield {"name": name, "pod": pod, "metrics_port": metrics_port}
    finally:
        remove(podman, name)


def get(cluster: Any, kind: str, name: str) -> Any:
    result = cluster.kubectl("get", kind, name, "-n", NS, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def test_operator_container_runs_as_the_chart_says(podman: Podman, operator: dict[str, Any]) -> None:
    info = json.loads(podman("container", "inspect", operator["name"]).stdout)[0]
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    assert info["Config"]["User"] == "1000:1000"
    assert info["State"]["Running"] is True
    # Nothing written outside the pod's volumes (the root filesystem is read-only; /tmp is the emptyDir).
    # (podman creates the mount points it needs; those and their parents are not writes.)
    mounts = [Path(m["mountPath"]) for m in operator["pod"]["spec"]["containers"][0]["volumeMounts"]]
    mount_points = {str(p) for m in mounts for p in (m, *m.parents)}
    changed = [line.split(None, 1)[1] for line in podman("diff", operator["name"]).stdout.splitlines() if line]
    assert [path for path in changed if path not in mount_points] == []
    with urllib.request.urlopen(f"http://127.0.0.1:{operator['metrics_port']}/metrics", timeout=5) as response:
        assert b"vlmr1_operator_" in response.read()


def test_operator_image_reconciles_an_example_grpojob(podman: Podman, cluster: Any, operator: dict[str, Any]) -> None:
    manifest = yaml.safe_load((REPO / "examples" / "grpojob-rec.yaml").read_text(encoding="utf-8"))
    manifest["metadata"]["namespace"] = NS
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    name = manifest["metadata"]["name"]
    live_job = get(cluster, "grpojob", name)
    expected = build_grpojob(GRPOJob.model_validate(live_job), OperatorSettings())
    assert len([o for o in expected if o["kind"] == "Pod"]) == manifest["spec"]["resources"]["nodes"]
    for want in expected:
        kind, child = want["kind"].lower(), want["metadata"]["name"]
        live = wait_for(
            f"{kind} {child}",
            functools.partial(get, cluster, kind, child),
            60,
            lambda: logs(podman, operator["name"])[-6000:],
        )
        assert live["metadata"]["ownerReferences"][0]["uid"] == live_job["metadata"]["uid"]
        if want["kind"] == "ConfigMap":
            assert live["data"] == want["data"]
        if want["kind"] == "Pod":
            container, wanted = live["spec"]["containers"][0], want["spec"]["containers"][0]
            assert container["image"] == wanted["image"] == "vlmr1/trainer:0.1.0-cuda"
            assert container["command"] == wanted["command"]
            assert container["env"] == wanted["env"]
    phase = wait_for(
        "status.phase",
        lambda: (get(cluster, "grpojob", name).get("status") or {}).get("phase"),
        60,
        lambda: logs(podman, operator["name"])[-6000:],
    )
    assert phase == "Pending"
