"""Proof that the control plane is a real API server: CRD validation, discovery, watches;
and that it starts with the CRDs installed and core objects in the simulated API.

Uses the ``control_plane`` fixture (fixtures.py via conftest.py). Third-party: pytest.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.apiserver  # registered in pyproject.toml; `-m "not apiserver"` deselects

GROUP = "example.vlmr1.io"
CRD_NAME = f"widgets.{GROUP}"

WIDGET_CRD = f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {CRD_NAME}
spec:
  group: {GROUP}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget}}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {{status: {{}}}}
    additionalPrinterColumns:
    - {{name: Replicas, type: integer, jsonPath: .spec.replicas}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [replicas, mode]
            properties:
              replicas: {{type: integer, minimum: 1}}
              mode: {{type: string, enum: [train, eval]}}
              min: {{type: integer, default: 0}}
              max: {{type: integer, default: 10}}
            x-kubernetes-validations:
            - rule: self.min <= self.max
              message: min must not exceed max
              fieldPath: .min
          status:
            type: object
            properties:
              phase: {{type: string}}
"""

# Not structural: "spec" has properties but no type. apiextensions.k8s.io/v1 must refuse it.
NON_STRUCTURAL_CRD = f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.{GROUP}
spec:
  group: {GROUP}
  scope: Namespaced
  names: {{plural: gadgets, singular: gadget, kind: Gadget}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            properties:
              size: {{}}
"""


def widget(name: str, **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "Widget",
            "metadata": {"name": name, "namespace": "default"},
            "spec": spec,
        }
    )


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cp(control_plane: Any) -> Any:
    """The control plane with the Widget CRD established and discoverable."""
    control_plane.kubectl("apply", "-f", "-", input=WIDGET_CRD)
    control_plane.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    # Discovery is published by a controller shortly after Established.
    wait_for(
        "widgets in discovery",
        lambda: control_plane.kubectl("get", "widgets", check=False).returncode == 0,
    )
    return control_plane


def apply_dry_run(cp: Any, manifest: str) -> subprocess.CompletedProcess[str]:
    result: subprocess.CompletedProcess[str] = cp.kubectl(
        "apply",
        "--dry-run=server",
        "--validate=false",
        "-o",
        "json",
        "-f",
        "-",
        input=manifest,
        check=False,
    )
    return result


def test_valid_object_is_accepted_and_defaulted(cp: Any) -> None:
    proc = apply_dry_run(cp, widget("ok", replicas=2, mode="train", extra="pruned"))
    assert proc.returncode == 0, proc.stderr
    spec = json.loads(proc.stdout)["spec"]
    # Structural schemas mean server-side defaulting and pruning of unknown fields.
    assert spec == {"replicas": 2, "mode": "train", "min": 0, "max": 10}


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        ({"replicas": "three", "mode": "train"}, "spec.replicas", "must be of type integer"),
        ({"replicas": 0, "mode": "train"}, "spec.replicas", "greater than or equal to 1"),
        ({"replicas": 1, "mode": "fly"}, "spec.mode", "Unsupported value"),
        ({"replicas": 1}, "spec.mode", "Required value"),
        ({"replicas": 1, "mode": "eval", "min": 5, "max": 2}, "spec.min", "min must not exceed max"),
    ],
    ids=["wrong-type", "below-minimum", "enum", "required", "cel-rule"],
)
def test_invalid_objects_are_rejected(cp: Any, spec: dict[str, Any], field: str, fragment: str) -> None:
    proc = apply_dry_run(cp, widget("bad", **spec))
    assert proc.returncode != 0, proc.stdout
    assert field in proc.stderr and fragment in proc.stderr, proc.stderr
    assert "is invalid" in proc.stderr, proc.stderr  # a 422 from the server, not a client error


def test_non_structural_crd_is_rejected(cp: Any) -> None:
    proc = cp.kubectl("apply", "-f", "-", input=NON_STRUCTURAL_CRD, check=False)
    assert proc.returncode != 0, proc.stdout
    assert "openAPIV3Schema.properties[spec].type" in proc.stderr, proc.stderr
    assert "Required value" in proc.stderr, proc.stderr


def test_discovery_and_get(cp: Any) -> None:
    with urllib.request.urlopen(f"{cp.server_url}/apis", timeout=10) as r:
        groups = {g["name"] for g in json.load(r)["groups"]}
    assert {"apiextensions.k8s.io", GROUP} <= groups
    cp.kubectl("apply", "-f", "-", input=widget("listed", replicas=3, mode="eval"))
    out = cp.kubectl("get", "widgets").stdout
    assert "listed" in out and "REPLICAS" in out, out
    assert "widgets" in cp.kubectl("api-resources", f"--api-group={GROUP}").stdout
    assert "default" in cp.kubectl("get", "namespaces").stdout


def test_plain_apply_uses_server_side_field_validation(cp: Any) -> None:
    # Default kubectl validation ("strict") is delegated to the server, which needs the
    # proxy's OpenAPI v3 stub; unknown fields are then rejected instead of pruned.
    manifest = widget("strict", replicas=1, mode="train", extra=True)
    proc = cp.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest, check=False)
    assert proc.returncode != 0
    assert 'unknown field "spec.extra"' in proc.stderr, proc.stderr
    good = widget("applied-twice", replicas=1, mode="train")
    cp.kubectl("apply", "-f", "-", input=good)
    cp.kubectl("apply", "-f", "-", input=good.replace('"replicas": 1', '"replicas": 2'))
    replicas = cp.kubectl("get", "widget", "applied-twice", "-o", "jsonpath={.spec.replicas}").stdout
    assert replicas == "2"


def test_namespaces_are_served_by_the_proxy(cp: Any) -> None:
    ns = '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "labels": {"x": "1"}}}'
    cp.kubectl("create", "namespace", "scratch")  # protobuf body
    cp.kubectl("apply", "-f", "-", input=ns)
    cp.kubectl("apply", "-f", "-", input=ns.replace('"1"', '"2"'))
    assert cp.kubectl("get", "ns", "team-a", "-o", "jsonpath={.metadata.labels.x}").stdout == "2"
    cp.kubectl(
        "apply",
        "-n",
        "team-a",
        "-f",
        "-",
        input=widget("elsewhere", replicas=1, mode="eval").replace('"namespace": "default"', '"namespace": "team-a"'),
    )
    assert "elsewhere" in cp.kubectl("get", "widgets", "-n", "team-a").stdout
    cp.kubectl("delete", "namespace", "scratch")
    assert cp.kubectl("get", "ns", "scratch", check=False).returncode != 0


def test_raw_watch_through_proxy_delivers_event(cp: Any) -> None:
    base = f"{cp.server_url}/apis/{GROUP}/v1/namespaces/default/widgets"
    with urllib.request.urlopen(base, timeout=10) as r:
        rv = json.load(r)["metadata"]["resourceVersion"]
    # Watching from the list's resourceVersion: no event can be missed, so no sleeps.
    with urllib.request.urlopen(f"{base}?watch=1&resourceVersion={rv}&timeoutSeconds=30", timeout=30) as stream:
        cp.kubectl("apply", "-f", "-", input=widget("watched-raw", replicas=1, mode="train"))
        for line in stream:  # chunked JSON lines, one event each
            event = json.loads(line)
            if event["object"]["metadata"]["name"] == "watched-raw":
                assert event["type"] == "ADDED"
                break
        else:
            pytest.fail("watch ended without the ADDED event")


def test_kubectl_watch_delivers_event(cp: Any, tmp_path: Path) -> None:
    cp.kubectl("apply", "-f", "-", input=widget("before-watch", replicas=1, mode="train"))
    argv = [
        str(cp.binaries.kubectl),
        f"--kubeconfig={cp.kubeconfig}",
        f"--cache-dir={cp.workdir / 'kubectl-cache'}",
        "get",
        "widgets",
        "--watch",
        "-o",
        "name",
        "--request-timeout=0",
    ]
    stderr = tmp_path / "kubectl-watch.err"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    # Raw os.read on the pipe: a buffered readline() could pull several lines into Python's
    # buffer and leave select() waiting for data that already arrived.
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    output = b""

    def read_until(name: str, timeout: float = 30.0) -> None:
        nonlocal output
        end = time.monotonic() + timeout
        while f"widget.{GROUP}/{name}\n".encode() not in output:
            if not sel.select(timeout=max(0.0, end - time.monotonic())):
                raise AssertionError(f"no {name} from kubectl --watch; got {output!r}")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"kubectl --watch exited: {stderr.read_text()}")
            output += chunk

    try:
        read_until("before-watch")  # the initial list is out: the watch follows from its RV
        cp.kubectl("apply", "-f", "-", input=widget("after-watch", replicas=1, mode="train"))
        read_until("after-watch")
    finally:
        sel.close()
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_starts_with_the_project_and_kopf_crds(cp: Any) -> None:
    names = cp.kubectl("get", "crds", "-o", "name").stdout
    for crd in ("grpojobs.vlmr1.io", "vlmservices.vlmr1.io", "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        assert f"customresourcedefinition.apiextensions.k8s.io/{crd}" in names


def test_core_objects_live_in_the_simulated_api(cp: Any) -> None:
    # The apiserver's own Service informer syncs against this list (its /readyz depends on it).
    service = '{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"}, "spec": {"clusterIP": "None"}}'
    cp.kubectl("apply", "-f", "-", input=service)
    assert cp.kubectl("get", "svc", "svc", "-o", "jsonpath={.spec.clusterIP}").stdout == "None"
    cp.kubectl("delete", "svc", "svc")
    assert "svc" not in cp.kubectl("get", "services", "-o", "name").stdout
