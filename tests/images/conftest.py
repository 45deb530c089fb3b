"""Fixtures of the image tests: the images, built (or found cached) by tests/tools/build-images.sh.

The build needs root and podman (the script installs podman, runc and debootstrap with apt-get
once). When the images cannot be built the tests FAIL with the script's reason; set
VLMR1_SKIP_IMAGES=1 to skip them explicitly on a machine that cannot build images.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from .podman import Podman, build_images

_NAME = "vlmr1_controlplane_fixtures"
if _NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_NAME, Path(__file__).parents[1] / "controlplane" / "fixtures.py")
    assert _spec is not None and _spec.loader is not None
    sys.modules[_NAME] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules[_NAME])

control_plane = sys.modules[_NAME].control_plane


@pytest.fixture(scope="session")
def podman() -> Podman:
    if os.environ.get("VLMR1_SKIP_IMAGES") == "1":
        pytest.skip("VLMR1_SKIP_IMAGES=1: image tests skipped on request")
    error = ""
    try:
        return build_images()
    except RuntimeError as exc:  # a clear failure, never a skip
        error = str(exc)
    pytest.fail(f"the images could not be built (set VLMR1_SKIP_IMAGES=1 to skip on purpose):\n{error}", pytrace=False)
