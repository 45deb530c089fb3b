"""Checks shared by the shipped synthetic datasets' tests (rec-shapes, colour-shapes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_regenerates(generator: Path, shipped: Path, args: list[str], out: Path) -> None:
    """Running ``generator`` with ``args`` into ``out`` reproduces ``shipped`` byte for byte, and
    the shipped README states those arguments."""
    subprocess.run([sys.executable, str(generator), "--out", str(out), *args], check=True, capture_output=True)
    regenerated, expected = files(out), files(shipped)
    assert sorted(regenerated) == sorted(expected), "the shipped folder has missing or extra files"
    changed = [name for name in expected if regenerated[name] != expected[name]]
    assert not changed, f"regenerated files differ from the shipped ones: {changed[:5]}"
    assert " ".join(args) in expected["README.md"].decode()
