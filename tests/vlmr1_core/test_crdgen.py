"""The committed CRDs are exactly what the models generate, and they are structural."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from vlmr1_core.crdgen import CRDS, render_crd

REPO = Path(__file__).resolve().parents[2]

#: Keys a structural schema node may carry (apiextensions.k8s.io/v1 JSONSchemaProps we use).
ALLOWED_KEYS = {
    "type",
    "description",
    "properties",
    "items",
    "additionalProperties",
    "required",
    "enum",
    "default",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "format",
    "nullable",
    "x-kubernetes-validations",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
}


def vlmr1(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vlmr1_cli", *args], cwd=cwd, capture_output=True, text=True)


def test_committed_crds_are_up_to_date() -> None:
    result = vlmr1("crds", "--check")
    assert result.returncode == 0, result.stderr


def test_check_reports_a_stale_file_and_regeneration_fixes_it(tmp_path: Path) -> None:
    shutil.copytree(REPO / "crds", tmp_path / "crds")
    stale = tmp_path / "crds" / "grpojobs.vlmr1.io.yaml"
    stale.write_text(stale.read_text().replace("Optimiser steps done", "Steps"))
    result = vlmr1("crds", "--check", cwd=tmp_path)
    assert result.returncode == 1
    assert "crds/grpojobs.vlmr1.io.yaml is out of date" in result.stderr
    assert "vlmservices" not in result.stderr
    assert vlmr1("crds", cwd=tmp_path).returncode == 0
    assert vlmr1("crds", "--check", cwd=tmp_path).returncode == 0
    assert stale.read_text() == (REPO / "crds" / "grpojobs.vlmr1.io.yaml").read_text()


def test_stdout_is_one_yaml_stream_of_both_crds() -> None:
    result = vlmr1("crds", "--stdout")
    docs = list(yaml.safe_load_all(result.stdout))
    assert [d["metadata"]["name"] for d in docs] == ["grpojobs.vlmr1.io", "vlmservices.vlmr1.io"]


def walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("crd", CRDS, ids=lambda c: c.name)
def test_schema_is_structural_and_described(crd: Any) -> None:
    schema = render_crd(crd)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in walk(schema, ""):
        assert set(node) <= ALLOWED_KEYS, f"{path}: {set(node) - ALLOWED_KEYS}"
        free = node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
        assert "type" in node or free, f"{path} has no type"
        if node.get("type") == "object" and not free and path != ".metadata":  # the API server owns metadata
            assert "properties" in node or "additionalProperties" in node, f"{path}: untyped object"
        if path.startswith(".spec.") and not path.endswith(("[]", "{}")):
            assert node.get("description"), f"{path} has no description (kubectl explain shows it)"


def test_cross_field_rules_reach_the_crd() -> None:
    rules = {
        path: [v["rule"] for v in node.get("x-kubernetes-validations", [])]
        for crd in CRDS
        for path, node in walk(render_crd(crd)["spec"]["versions"][0]["schema"]["openAPIV3Schema"], crd.kind)
    }
    assert "self.min <= self.max" in rules["VLMService.spec.replicas"]
    assert "!has(self.lora) || self.mode == 'lora'" in rules["GRPOJob.spec.finetuning"]
    assert any(r.endswith("% self.grpo.numGenerations == 0") for r in rules["GRPOJob.spec"])
    assert rules["GRPOJob"] == []  # the name limit is a metadata.name schema, not CEL


def test_name_limits_are_in_the_metadata_schema() -> None:
    (job_crd, svc_crd) = (render_crd(c)["spec"]["versions"][0]["schema"]["openAPIV3Schema"] for c in CRDS)
    assert job_crd["properties"]["metadata"]["properties"]["name"]["maxLength"] == 48
    assert svc_crd["properties"]["metadata"]["properties"]["name"]["maxLength"] == 63


def test_nested_sections_default_to_their_defaulted_form() -> None:
    """A default of {} would fail the section's own CEL rules on the API server; see apimodel.defaulted."""
    spec = render_crd(CRDS[1])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["replicas"]["default"] == {"min": 1, "max": 1}
    assert spec["properties"]["resources"]["default"]["accelerator"] == "nvidia"


def test_subresources_and_columns() -> None:
    job, svc = (render_crd(c)["spec"] for c in CRDS)
    assert job["names"]["shortNames"] == ["grpo"] and svc["names"]["shortNames"] == ["vlms"]
    assert [c["name"] for c in job["versions"][0]["additionalPrinterColumns"] if not c.get("priority")] == [
        "Phase",
        "Step",
        "Reward",
        "Age",
    ]
    assert [c["name"] for c in svc["versions"][0]["additionalPrinterColumns"] if not c.get("priority")] == [
        "Ready",
        "Replicas",
        "Throughput",
        "Model",
        "Age",
    ]
    assert job["versions"][0]["subresources"] == {"status": {}}
    assert svc["versions"][0]["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas.count"
