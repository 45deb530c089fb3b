"""Fixtures of the chart tests: a pinned helm binary and helpers to lint and render the chart.

helm comes from tests/tools/install-helm.sh (cached outside the repository). When it
cannot be installed the tests FAIL with the script's reason; set VLMR1_SKIP_HELM=1 to
skip them explicitly on a machine that cannot have helm.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "vlmr1"
INSTALL_HELM = REPO / "tests" / "tools" / "install-helm.sh"
#: A committed non-default values file (namespaced, one replica, custom images, ServiceMonitor).
NAMESPACED_VALUES = Path(__file__).resolve().parent / "values-namespaced.yaml"

RELEASE = "ops"
NAMESPACE = "vlmr1-system"
#: The chart's kubeVersion floor and the newest Kubernetes whose schemas the pinned
#: kubernetes-validate ships: rendered objects are validated against both.
KUBE_VERSIONS = ("1.29.0", "1.37.0")
#: Rendering uses the newest (the chart reads no Capabilities besides kubeVersion).
RENDER_KUBE_VERSION = KUBE_VERSIONS[-1]
HELM_TIMEOUT_S = 60
INSTALL_TIMEOUT_S = 600


@dataclass(frozen=True)
class Helm:
    """A helm binary bound to the chart."""

    binary: str

    def run(self, *args: str, values: Sequence[Mapping[str, Any] | Path] = ()) -> subprocess.CompletedProcess[str]:
        """`helm <args> -f <each values>`; dicts are written to temporary files first."""
        with tempfile.TemporaryDirectory(prefix="vlmr1-chart-") as tmp:
            files: list[str] = []
            for i, item in enumerate(values):
                if isinstance(item, Path):
                    files += ["-f", str(item)]
                    continue
                path = Path(tmp) / f"values-{i}.yaml"
                path.write_text(yaml.safe_dump(dict(item)), encoding="utf-8")
                files += ["-f", str(path)]
            # Isolate helm from the user's repositories and plugins (lint and template
            # never contact a cluster).
            env = {
                **os.environ,
                "HELM_CACHE_HOME": str(Path(tmp) / "cache"),
                "HELM_CONFIG_HOME": str(Path(tmp) / "config"),
                "HELM_DATA_HOME": str(Path(tmp) / "data"),
            }
            return subprocess.run(
                [self.binary, *args, *files],
                capture_output=True,
                text=True,
                timeout=HELM_TIMEOUT_S,
                env=env,
                check=False,
            )

    def lint(self, *values: Mapping[str, Any] | Path) -> subprocess.CompletedProcess[str]:
        return self.run("lint", "--strict", str(CHART), values=values)

    def template_text(
        self, *values: Mapping[str, Any] | Path, include_crds: bool = False, chart: Path = CHART
    ) -> subprocess.CompletedProcess[str]:
        args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE, "--kube-version", RENDER_KUBE_VERSION]
        if include_crds:
            args.append("--include-crds")
        return self.run(*args, values=values)

    def template(self, *values: Mapping[str, Any] | Path, include_crds: bool = False) -> list[dict[str, Any]]:
        """The rendered objects; fails the test with helm's message if rendering fails."""
        result = self.template_text(*values, include_crds=include_crds)
        assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def helm() -> Helm:
    """The pinned helm (installed into the cache on first use)."""
    if os.environ.get("VLMR1_SKIP_HELM") == "1":
        pytest.skip("VLMR1_SKIP_HELM=1: chart tests skipped on request")
    try:
        result = subprocess.run(
            ["bash", str(INSTALL_HELM)], capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{INSTALL_HELM.relative_to(REPO)} did not finish in {INSTALL_TIMEOUT_S} s")
    if result.returncode != 0 or not result.stdout.strip():
        pytest.fail(
            f"cannot install helm with {INSTALL_HELM.relative_to(REPO)} (exit {result.returncode}):\n"
            f"{result.stderr}\nSet VLMR1_HELM=/path/to/helm to use another binary, "
            "or VLMR1_SKIP_HELM=1 to skip the chart tests."
        )
    return Helm(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def default_objects(helm: Helm) -> list[dict[str, Any]]:
    """The chart rendered with its default values."""
    return helm.template()


@pytest.fixture(scope="session")
def namespaced_objects(helm: Helm) -> list[dict[str, Any]]:
    """The chart rendered with tests/chart/values-namespaced.yaml."""
    return helm.template(NAMESPACED_VALUES)


@pytest.fixture(scope="session")
def namespaced_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(NAMESPACED_VALUES.read_text(encoding="utf-8"))
    return values


@pytest.fixture(scope="session")
def default_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    return values


def of_kind(objects: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The objects of one kind, in rendering order."""
    return [o for o in objects if o["kind"] == kind]


def one(objects: Sequence[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The single object of a kind (asserts there is exactly one)."""
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
    return found[0]


def env_of(container: Mapping[str, Any]) -> dict[str, str]:
    """A container's literal environment (entries with `value`)."""
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


@pytest.fixture
def chart_copy() -> Iterator[Path]:
    """A scratch copy of the chart (for rendering NOTES.txt as an ordinary template)."""
    with tempfile.TemporaryDirectory(prefix="vlmr1-chart-copy-") as tmp:
        target = Path(tmp) / "vlmr1"
        shutil.copytree(CHART, target)
        yield target
