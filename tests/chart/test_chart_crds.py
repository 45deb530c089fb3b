"""The chart's crds/ hold exactly the generated CRDs (`vlmr1 crds --check`) plus kopf's
peering CRDs, whose resources are the ones the operator's RBAC names."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import yaml

from vlmr1_core.crdgen import render_all
from vlmr1_operator.permissions import RULES

from .conftest import CHART, REPO

PEERING_FILE = "kopf-peering.yaml"
#: The copy the control-plane tests install (written by another part of the project).
DEVCLUSTER_PEERING = REPO / "operator" / "src" / "vlmr1_operator" / "devcluster" / "kopf-peering-crds.yaml"


def test_chart_crds_are_up_to_date() -> None:
    """`vlmr1 crds --check` compares crds/ and helm/vlmr1/crds/ with the API models."""
    result = subprocess.run(
        [sys.executable, "-m", "vlmr1_cli", "crds", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_chart_crds_are_the_generated_ones_and_kopf_peering() -> None:
    files = {p.name for p in (CHART / "crds").iterdir()}
    assert files == {*render_all(), PEERING_FILE}


def peering_crds(text: str) -> dict[str, dict[str, Any]]:
    """Name -> the identity of each peering CRD (group, scope, names, served versions)."""
    out = {}
    for crd in yaml.safe_load_all(text):
        if crd:
            spec = crd["spec"]
            out[crd["metadata"]["name"]] = {
                "group": spec["group"],
                "scope": spec["scope"],
                "kind": spec["names"]["kind"],
                "plural": spec["names"]["plural"],
                "versions": sorted(v["name"] for v in spec["versions"] if v["served"]),
            }
    return out


def test_kopf_peering_crds_serve_what_the_operator_uses() -> None:
    crds = peering_crds((CHART / "crds" / PEERING_FILE).read_text(encoding="utf-8"))
    assert crds == {
        "clusterkopfpeerings.kopf.dev": {
            "group": "kopf.dev",
            "scope": "Cluster",
            "kind": "ClusterKopfPeering",
            "plural": "clusterkopfpeerings",
            "versions": ["v1"],
        },
        "kopfpeerings.kopf.dev": {
            "group": "kopf.dev",
            "scope": "Namespaced",
            "kind": "KopfPeering",
            "plural": "kopfpeerings",
            "versions": ["v1"],
        },
    }
    # The RBAC rules name the same resources, with the same scope.
    granted = {(r.api_group, res): r.cluster_scoped for r in RULES for res in r.resources}
    for crd in crds.values():
        assert granted[(crd["group"], crd["plural"])] == (crd["scope"] == "Cluster")
    if DEVCLUSTER_PEERING.is_file():  # the development cluster's copy must define the same CRDs
        assert peering_crds(DEVCLUSTER_PEERING.read_text(encoding="utf-8")) == crds
