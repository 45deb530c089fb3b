"""Every rendered object validates against the official Kubernetes schemas (kubernetes-validate,
strict: unknown fields are errors); the few custom kinds are checked against their CRDs."""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # a dependency of kubernetes-validate
import pytest
import yaml

from .conftest import CHART, KUBE_VERSIONS, NAMESPACED_VALUES, Helm

#: Kinds with no official schema, skipped by kubernetes-validate (and only these): kopf's
#: peering objects are checked against the chart's own CRDs below; the ServiceMonitor
#: (prometheus-operator's CRD is not in the chart) is checked field by field in
#: test_chart_render.py.
NO_OFFICIAL_SCHEMA = {
    ("kopf.dev/v1", "ClusterKopfPeering"),
    ("kopf.dev/v1", "KopfPeering"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}

#: Values covering every optional object and branch of the templates.
SCENARIOS: dict[str, tuple[dict[str, Any] | Path, ...]] = {
    "default": (),
    "namespaced": (NAMESPACED_VALUES,),
    "namespaced-peering": (
        {"watchNamespaces": ["a", "b"], "podAnnotations": {"team": "ml"}, "podLabels": {"tier": "system"}},
    ),
    "custom-affinity": (
        {
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["system"]}]}
                        ]
                    }
                }
            },
            "metrics": {"service": {"type": "NodePort", "annotations": {"a": "b"}}},
            "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/x"}},
        },
    ),
}


@pytest.fixture(scope="module")
def kubernetes_validate() -> ModuleType:
    """The validator (a dev dependency); missing, the tests fail rather than skip."""
    try:
        return importlib.import_module("kubernetes_validate")
    except ImportError:
        pytest.fail("kubernetes-validate is missing: install the dev extra (pip install -e '.[dev]')")


def validate(kv: ModuleType, obj: dict[str, Any], version: str) -> None:
    """kubernetes-validate in strict mode, with the object's identity in the failure."""
    where = f"{obj['kind']} {obj['metadata'].get('namespace', '')}/{obj['metadata']['name']} (Kubernetes {version})"
    try:
        kv.validate(obj, version, strict=True)
    except kv.ValidationError as error:
        pytest.fail(f"{where}: {error.message} at {'.'.join(map(str, error.path))}")
    except kv.SchemaNotFoundError as error:
        pytest.fail(f"{where}: {error.message}; a kind without an official schema needs NO_OFFICIAL_SCHEMA")


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rendered_objects_match_the_official_schemas(
    helm: Helm, kubernetes_validate: ModuleType, scenario: str
) -> None:
    objects = helm.template(*SCENARIOS[scenario], include_crds=True)
    checked = 0
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in NO_OFFICIAL_SCHEMA:
            continue
        for version in KUBE_VERSIONS:
            validate(kubernetes_validate, obj, version)
        checked += 1
    # CRDs (from crds/) included: they have an official schema too.
    assert checked >= 8, f"only {checked} objects validated in {scenario}"


def test_skip_list_holds_only_kinds_without_an_official_schema(kubernetes_validate: ModuleType) -> None:
    for api_version, kind in NO_OFFICIAL_SCHEMA:
        obj = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}}
        with pytest.raises(kubernetes_validate.SchemaNotFoundError):
            kubernetes_validate.validate(obj, KUBE_VERSIONS[-1], strict=True)


def test_validation_catches_a_bad_deployment(
    default_objects: list[dict[str, Any]], kubernetes_validate: ModuleType
) -> None:
    """Negative control: strict validation rejects an unknown field and a wrong type."""
    deployment = next(o for o in default_objects if o["kind"] == "Deployment")
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "2"
    for bad in (typo, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, KUBE_VERSIONS[-1], strict=True)


def chart_crds() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the CRD in the chart's crds/ that defines it."""
    found = {}
    for path in sorted((CHART / "crds").glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if crd:
                for version in crd["spec"]["versions"]:
                    found[(f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])] = {
                        "scope": crd["spec"]["scope"],
                        "schema": version["schema"]["openAPIV3Schema"],
                    }
    return found


@pytest.mark.parametrize("values", [{}, {"watchNamespaces": ["a", "b"]}], ids=["clusterwide", "namespaced"])
def test_peering_objects_match_the_charts_crds(helm: Helm, values: dict[str, Any]) -> None:
    crds = chart_crds()
    peerings = [o for o in helm.template(values) if o["apiVersion"] == "kopf.dev/v1"]
    assert peerings, "peering is on by default: the chart creates the peering objects"
    for obj in peerings:
        crd = crds[(obj["apiVersion"], obj["kind"])]
        jsonschema.validate(obj, crd["schema"])
        assert ("namespace" in obj["metadata"]) == (crd["scope"] == "Namespaced"), obj
