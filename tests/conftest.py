"""Shared fixtures. Paths are resolved from the repository root, whatever the working directory."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
BAD_MANIFESTS = REPO / "tests" / "vlmr1_operator" / "bad_manifests"


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def golden() -> Callable[[Path, str], None]:
    """Compare rendered text with a committed golden file; VLMR1_UPDATE_GOLDEN=1 rewrites it
    (review the diff afterwards)."""

    def check(path: Path, rendered: str) -> None:
        if os.environ.get("VLMR1_UPDATE_GOLDEN") == "1":
            path.write_text(rendered)
        assert path.is_file(), f"no golden file {path.name}; run with VLMR1_UPDATE_GOLDEN=1"
        assert rendered == path.read_text()

    return check
