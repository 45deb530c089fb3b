"""The chart and operator/Dockerfile agree: version, entry point, ports, user, no trainer stack.

(tests/test_dockerfiles.py checks every Dockerfile against pyproject.toml and the sources;
this file checks what only the chart and the operator image share.)
"""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import yaml

from .conftest import CHART, REPO

DOCKERFILE = REPO / "operator" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, args = stripped.partition(" ")
            out.append((keyword.upper(), args.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    found = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(found) if keyword == "FROM")
    return found[last_from:]


def chart_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    return values


def test_chart_versions_follow_the_project() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "vlmr1"
    assert chart["appVersion"] == project["version"], "the default image tag is the appVersion"


def test_image_runs_the_operator_as_the_charts_user() -> None:
    stage = final_stage()
    (entrypoint,) = [args for keyword, args in stage if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["vlmr1", "operator"], "the chart passes only the operator's flags"
    users = [args for keyword, args in stage if keyword == "USER"]
    values = chart_values()
    assert users[-1] == f"{values['podSecurityContext']['runAsUser']}:{values['podSecurityContext']['runAsGroup']}"
    exposed = {int(p) for keyword, args in stage if keyword == "EXPOSE" for p in args.split()}
    assert exposed == {values["metrics"]["port"], values["liveness"]["port"]}


def test_image_installs_the_operator_extra_only() -> None:
    """Read here; tests/images/test_image_hygiene.py checks the built image itself."""
    runs = [args for keyword, args in instructions() if keyword == "RUN"]
    installs = [args for args in runs if "pip install" in args and "--upgrade pip" not in args]
    # The project with its extras (`.[x]`, `vlmr1[x]`), and the dependency layer's extras
    # (pyproject.toml's lists named after the one-line reader's script).
    extras = {
        e for args in installs for group in re.findall(r"(?:\.|vlmr1)\[([^\]]+)\]", args) for e in group.split(",")
    }
    extras |= {e for args in runs for group in re.findall(r"\)\)'((?:\s+[\w-]+)+)\s*>", args) for e in group.split()}
    assert extras == {"operator"}
    assert any("find_spec('torch') is not None" in args for args in runs), "the build must fail if torch gets in"
    assert installs and all(re.search(r"-c \S*constraints\.txt", args) for args in installs), "installs use the pins"
