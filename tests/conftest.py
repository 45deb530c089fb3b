"""Shared fixtures. Paths are resolved from the repository root, whatever the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
BAD_MANIFESTS = REPO / "tests" / "vlmr1_operator" / "bad_manifests"


@pytest.fixture
def repo() -> Path:
    return REPO
