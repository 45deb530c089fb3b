"""Shared fixtures. Paths are resolved from the repository root, whatever the working directory."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
BAD_MANIFESTS = REPO / "tests" / "vlmr1_core" / "bad_manifests"


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


class FakeS3:
    """A downloader over an in-memory bucket: ``{key: bytes}``."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.calls: list[tuple[str, str]] = []

    def __call__(self, bucket: str, key: str, dest: Path) -> None:
        self.calls.append((bucket, key))
        if key in self.objects:
            dest.write_bytes(self.objects[key])
            return
        for name, data in self.objects.items():
            if name.startswith(key + "/"):
                target = dest / name[len(key) + 1 :]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)


@pytest.fixture
def fake_s3() -> type[FakeS3]:
    """The FakeS3 downloader class (``fake_s3({key: bytes})``) for s3:// tests without a server."""
    return FakeS3
