"""Who may import whom: the import-linter contracts in pyproject.toml hold, and cover every package.

core <- operator, trainer, serving (never on each other) <- the vlmr1 command <- dev tools; the
contract package and the operator and serving images stay free of the model or controller
stacks they do not ship. docs/architecture.md explains the layout.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_the_contracts_cover_every_package() -> None:
    roots = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["where"]
    packages = {p.name for root in roots for p in (REPO / root).iterdir() if (p / "__init__.py").is_file()}
    config = PYPROJECT["tool"]["importlinter"]
    assert set(config["root_packages"]) == packages
    layered = {name.strip() for layer in config["contracts"][0]["layers"] for name in layer.split("|")}
    assert layered == packages
