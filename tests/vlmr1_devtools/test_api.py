"""The simulated core API of the dev cluster, through real clients: the official `kubernetes`
Python client, kubectl, raw watches, and a real `kopf run` operator that reacts to a GRPOJob
on the real apiextensions-apiserver by creating a ConfigMap in the simulated API."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vlmr1_devtools.devcluster.fixtures import make_control_plane_fixture

control_plane = make_control_plane_fixture("module")
pytestmark = pytest.mark.apiserver

kubernetes = pytest.importorskip("kubernetes")
from kubernetes.client.exceptions import ApiException  # noqa: E402

NS = "sim"
GROUP, VERSION = "vlmr1.io", "v1alpha1"


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    end = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
    return result


@pytest.fixture(scope="module")
def api(control_plane: Any) -> Iterator[Any]:
    client = kubernetes.config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    yield client
    client.close()


@pytest.fixture(scope="module")
def core(api: Any) -> Any:
    return kubernetes.client.CoreV1Api(api)


@pytest.fixture(scope="module")
def custom(api: Any) -> Any:
    return kubernetes.client.CustomObjectsApi(api)


def pod(name: str, labels: dict[str, str] | None = None, owners: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels or {}}
    if owners:
        meta["ownerReferences"] = owners
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": [{"name": "c", "image": "i"}]}}


def grpojob(name: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GRPOJob",
        "metadata": {"name": name, **meta},
        "spec": {"model": {"uri": "hf://Qwen/Qwen2.5-VL-3B-Instruct"}, "datasets": [{"jsonl": "a.jsonl"}]},
    }


def owner_ref(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"], "uid": meta["uid"]}


def pod_names(core: Any, selector: str = "", ns: str = NS) -> set[str]:
    return {p.metadata.name for p in core.list_namespaced_pod(ns, label_selector=selector).items}


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def test_discovery_lists_simulated_and_custom_resources(control_plane: Any) -> None:
    base = control_plane.server_url
    core_resources = {r["name"]: r for r in get_json(f"{base}/api/v1")["resources"]}
    assert {"pods", "pods/status", "services", "configmaps", "events", "namespaces"} <= set(core_resources)
    assert core_resources["pods"]["namespaced"] and "watch" in core_resources["pods"]["verbs"]
    assert core_resources["pods"]["kind"] == "Pod"
    groups = {g["name"]: g for g in get_json(f"{base}/apis")["groups"]}
    assert {"scheduling.volcano.sh", "events.k8s.io", "coordination.k8s.io", GROUP, "kopf.dev"} <= set(groups)
    assert groups["scheduling.volcano.sh"]["preferredVersion"]["version"] == "v1beta1"
    podgroups = get_json(f"{base}/apis/scheduling.volcano.sh/v1beta1")["resources"]
    assert any(r["name"] == "podgroups" and r["kind"] == "PodGroup" for r in podgroups)
    out = control_plane.kubectl("api-resources").stdout
    for resource in ("podgroups", "grpojobs", "clusterkopfpeerings", "kopfpeerings", "leases", "configmaps"):
        assert resource in out, out


def test_crud_selectors_and_errors_with_the_python_client(core: Any) -> None:
    core.create_namespaced_pod(NS, pod("web-0", {"app": "web", "tier": "a"}))
    core.create_namespaced_pod(NS, pod("web-1", {"app": "web", "tier": "b"}))
    core.create_namespaced_pod(NS, pod("db-0", {"app": "db"}))
    assert pod_names(core, "app=web") == {"web-0", "web-1"}
    assert pod_names(core, "app in (web,db),tier!=a") == {"web-1", "db-0"}
    assert pod_names(core, "!tier") == {"db-0"}
    by_field = core.list_namespaced_pod(NS, field_selector="metadata.name=web-1").items
    assert [p.metadata.name for p in by_field] == ["web-1"]
    assert core.list_namespaced_pod(NS).metadata.resource_version
    with pytest.raises(ApiException) as exists:
        core.create_namespaced_pod(NS, pod("web-0"))
    assert exists.value.status == 409 and json.loads(exists.value.body)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_pod("nope", NS)
    assert missing.value.status == 404 and json.loads(missing.value.body)["kind"] == "Status"
    with pytest.raises(ApiException) as unnamed:
        core.create_namespaced_config_map(NS, {"metadata": {}, "data": {}})
    assert unnamed.value.status == 422
    generated = core.create_namespaced_config_map(NS, {"metadata": {"generateName": "gen-"}})
    assert generated.metadata.name.startswith("gen-")


def test_patch_flavours_conflicts_and_status(core: Any) -> None:
    created = core.create_namespaced_pod(NS, pod("patched", {"a": "1"}))
    assert created.metadata.generation == 1 and created.status.phase == "Pending"
    # Strategic merge (the client's default for objects): containers merge by name.
    core.patch_namespaced_pod(
        "patched", NS, {"spec": {"containers": [{"name": "c", "env": [{"name": "X", "value": "1"}]}]}}
    )
    merged = core.read_namespaced_pod("patched", NS)
    assert merged.spec.containers[0].image == "i" and merged.spec.containers[0].env[0].name == "X"
    assert merged.metadata.generation == 2
    core.patch_namespaced_pod(
        "patched", NS, {"metadata": {"labels": {"a": None, "b": "2"}}}, _content_type="application/merge-patch+json"
    )
    assert core.read_namespaced_pod("patched", NS).metadata.labels == {"b": "2"}
    core.patch_namespaced_pod("patched", NS, [{"op": "test", "path": "/metadata/labels/b", "value": "2"},
                                              {"op": "add", "path": "/metadata/labels/c", "value": "3"}])  # fmt: skip
    with pytest.raises(ApiException) as failed:
        core.patch_namespaced_pod("patched", NS, [{"op": "test", "path": "/metadata/labels/b", "value": "9"}])
    assert failed.value.status == 422
    # Optimistic concurrency: a replace with an old resourceVersion is a 409 Conflict.
    stale = merged
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_pod("patched", NS, stale)
    assert conflict.value.status == 409 and json.loads(conflict.value.body)["reason"] == "Conflict"
    # The tests play the kubelet through the status subresource.
    status = {"status": {"phase": "Running", "podIP": "127.0.0.1"}}
    core.patch_namespaced_pod_status("patched", NS, status)
    running = core.read_namespaced_pod("patched", NS)
    assert running.status.phase == "Running" and running.status.pod_ip == "127.0.0.1"
    core.patch_namespaced_pod("patched", NS, {"status": {"phase": "Failed"}})  # ignored on the main resource
    assert core.read_namespaced_pod("patched", NS).status.phase == "Running"


def test_watch_from_a_resource_version_with_concurrent_watchers(core: Any, control_plane: Any) -> None:
    core.create_namespaced_config_map(NS, {"metadata": {"name": "w-before", "labels": {"w": "1"}}})
    rv = core.list_namespaced_config_map(NS, label_selector="w=1").metadata.resource_version
    raw_events: list[dict[str, Any]] = []
    query = f"watch=1&labelSelector=w%3D1&resourceVersion={rv}&timeoutSeconds=20"
    url = f"{control_plane.server_url}/api/v1/namespaces/{NS}/configmaps?{query}"

    def raw_watch() -> None:
        with urllib.request.urlopen(url, timeout=30) as stream:
            for line in stream:
                raw_events.append(json.loads(line))
                if len(raw_events) == 3:
                    return

    thread = threading.Thread(target=raw_watch)
    thread.start()
    core.create_namespaced_config_map(NS, {"metadata": {"name": "w-after", "labels": {"w": "1"}}})
    core.patch_namespaced_config_map("w-after", NS, {"data": {"k": "v"}})
    core.delete_namespaced_config_map("w-after", NS)
    seen = []
    for event in kubernetes.watch.Watch().stream(
        core.list_namespaced_config_map, NS, label_selector="w=1", resource_version=rv, timeout_seconds=10
    ):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 3:
            break
    expected = [("ADDED", "w-after"), ("MODIFIED", "w-after"), ("DELETED", "w-after")]
    assert seen == expected
    thread.join(timeout=30)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in raw_events] == expected


def test_deleting_a_grpojob_on_the_real_server_collects_its_dependents(core: Any, custom: Any) -> None:
    job = custom.create_namespaced_custom_object(GROUP, VERSION, NS, "grpojobs", grpojob("gc-job"))
    core.create_namespaced_pod(NS, pod("gc-job-worker-0", {"job": "gc"}, [owner_ref(job)]))
    core.create_namespaced_service(NS, {"metadata": {"name": "gc-job-worker-0", "ownerReferences": [owner_ref(job)]},
                                        "spec": {"clusterIP": "None", "selector": {"job": "gc"}}})  # fmt: skip
    owned_cm = core.create_namespaced_config_map(
        NS, {"metadata": {"name": "gc-job-config", "ownerReferences": [owner_ref(job)]}}
    )
    # A grandchild owned by the pod goes too.
    worker = core.read_namespaced_pod("gc-job-worker-0", NS)
    core.create_namespaced_config_map(NS, {"metadata": {"name": "gc-grandchild", "ownerReferences": [
        {"apiVersion": "v1", "kind": "Pod", "name": worker.metadata.name, "uid": worker.metadata.uid}]}})  # fmt: skip
    time.sleep(0)  # (no wait needed: the owner exists, nothing may be collected yet)
    assert owned_cm.metadata.name in {c.metadata.name for c in core.list_namespaced_config_map(NS).items}
    assert pod_names(core, "job=gc") == {"gc-job-worker-0"}  # alive while the owner is
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "grpojobs", "gc-job")

    def collected() -> bool:
        cms = {c.metadata.name for c in core.list_namespaced_config_map(NS).items}
        services = {s.metadata.name for s in core.list_namespaced_service(NS).items}
        return (
            not pod_names(core, "job=gc")
            and not {"gc-job-config", "gc-grandchild"} & cms
            and "gc-job-worker-0" not in services
        )

    wait_for("the GRPOJob's dependents to be collected", collected)


def test_finalized_and_already_deleted_owners_are_noticed(core: Any, custom: Any) -> None:
    job = custom.create_namespaced_custom_object(
        GROUP, VERSION, NS, "grpojobs", grpojob("fin-job", finalizers=["test/hold"])
    )
    core.create_namespaced_pod(NS, pod("fin-worker", {"job": "fin"}, [owner_ref(job)]))
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "grpojobs", "fin-job")  # only marks it
    assert pod_names(core, "job=fin") == {"fin-worker"}
    # Removing the finalizer deletes the job through a PATCH, not a DELETE: the periodic check sees it.
    custom.patch_namespaced_custom_object(GROUP, VERSION, NS, "grpojobs", "fin-job", {"metadata": {"finalizers": None}})
    wait_for("the finalized job's pod to be collected", lambda: not pod_names(core, "job=fin"))
    # A dependent created after its owner is gone (an operator racing a delete) is collected too.
    ghost = custom.create_namespaced_custom_object(GROUP, VERSION, NS, "grpojobs", grpojob("ghost-job"))
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "grpojobs", "ghost-job")
    core.create_namespaced_pod(NS, pod("ghost-worker", {"job": "ghost"}, [owner_ref(ghost)]))
    wait_for("the orphan's collection", lambda: not pod_names(core, "job=ghost"))


def test_kubectl_get_apply_delete(control_plane: Any, core: Any) -> None:
    core.create_namespaced_pod(NS, pod("kc-0", {"app": "kc"}))
    core.create_namespaced_pod(NS, pod("kc-1", {"app": "other"}))
    out = control_plane.kubectl("get", "pods", "-n", NS, "-l", "app=kc").stdout
    assert "kc-0" in out and "kc-1" not in out and "STATUS" in out and "Pending" in out, out
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "kc-cm", "namespace": NS},
        "data": {"k": "1"},
    }
    assert "created" in control_plane.kubectl("apply", "-f", "-", input=json.dumps(manifest)).stdout
    manifest["data"] = {"k": "2"}
    assert "configured" in control_plane.kubectl("apply", "-f", "-", input=json.dumps(manifest)).stdout
    assert core.read_namespaced_config_map("kc-cm", NS).data == {"k": "2"}
    control_plane.kubectl("delete", "configmap", "kc-cm", "-n", NS)
    assert control_plane.kubectl("get", "configmap", "kc-cm", "-n", NS, check=False).returncode != 0
    podgroup = {"apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "PodGroup",
                "metadata": {"name": "pg", "namespace": NS}, "spec": {"minMember": 2}}  # fmt: skip
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(podgroup))
    assert "pg" in control_plane.kubectl("get", "podgroups", "-n", NS).stdout


HANDLER = textwrap.dedent(
    """
    import kopf
    import kubernetes

    @kopf.on.create("vlmr1.io", "v1alpha1", "grpojobs")
    def created(body, name, namespace, **_):
        config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": f"{name}-from-kopf"}, "data": {"job": name}}
        kopf.adopt(config_map)
        kubernetes.config.load_kube_config()
        kubernetes.client.CoreV1Api().create_namespaced_config_map(namespace, config_map)
        # kopf >= 1.45 posts only explicit events (settings.posting.loggers is off by default).
        kopf.info(body, reason="ConfigMapCreated", message=f"created {name}-from-kopf")
    """
)


@pytest.mark.parametrize("mode", ["standalone", "peering"])
def test_kopf_operator_reacts_to_a_grpojob(
    control_plane: Any, core: Any, custom: Any, tmp_path: Path, mode: str
) -> None:
    ns = f"kopf-{mode}"
    control_plane.kubectl("create", "namespace", ns)
    handler = tmp_path / "handler.py"
    handler.write_text(HANDLER)
    argv = [sys.executable, "-m", "kopf", "run", "--namespace", ns, "--verbose", str(handler)]
    if mode == "standalone":
        argv.insert(4, "--standalone")
    else:
        peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "smoke", "namespace": ns}}
        control_plane.kubectl("apply", "-f", "-", input=json.dumps(peering))
        argv[4:4] = ["--peering", "smoke"]
    log = tmp_path / "kopf.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=control_plane.env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        if mode == "peering":  # kopf announces itself in the peering object's status
            wait_for("kopf in the peering", lambda: custom.get_namespaced_custom_object(
                "kopf.dev", "v1", ns, "kopfpeerings", "smoke").get("status"), timeout=60)  # fmt: skip
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "grpojobs", grpojob("smoke"))

        def config_map() -> Any:
            try:
                return core.read_namespaced_config_map("smoke-from-kopf", ns)
            except ApiException:
                assert proc.poll() is None, log.read_text()
                return None

        made = wait_for(f"kopf's ConfigMap ({log})", config_map, timeout=60)
        assert made.data == {"job": "smoke"}
        assert made.metadata.owner_references[0].kind == "GRPOJob"
        events = wait_for("kopf's events", lambda: [
            e for e in core.list_namespaced_event(ns).items if e.involved_object.name == "smoke"])  # fmt: skip
        assert any("created" in (e.message or "") for e in events), [e.message for e in events]
        control_plane.kubectl("delete", "grpojob", "smoke", "-n", ns)
        wait_for("the ConfigMap's collection", lambda: config_map() is None)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
