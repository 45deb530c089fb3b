"""Fixtures of the image tests: the images, built (or found cached) by tests/tools/build-images.sh.

The build needs root and podman (the script installs podman, runc and debootstrap with apt-get
once). When the images cannot be built the tests FAIL with the script's reason; set
VLMR1_SKIP_IMAGES=1 to skip them explicitly on a machine that cannot build images.
"""

from __future__ import annotations

import os

import pytest

from vlmr1_devtools.devcluster.fixtures import control_plane  # noqa: F401  (the real API server, a fixture)

from .podman import Podman, build_images


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
