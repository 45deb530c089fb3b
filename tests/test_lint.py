"""ruff and mypy (strict) stay clean on the packages: part of the test command, so CI enforces it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ["core/src", "operator/src", "trainer_image/src", "serving_image/src", "cli/src", "devtools/src"]
#: Everything Python that ruff checks; bench/ joins once it exists.
LINTED = [*PACKAGES, *(d for d in ("tests", "bench") if (REPO / d).is_dir())]


def test_ruff_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", *LINTED], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", *LINTED],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy", *PACKAGES], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
