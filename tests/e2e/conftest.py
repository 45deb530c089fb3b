"""The real API server fixture (tests/controlplane/fixtures.py), loaded by path and shared."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_NAME = "vlmr1_controlplane_fixtures"
if _NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_NAME, Path(__file__).parents[1] / "controlplane" / "fixtures.py")
    assert _spec is not None and _spec.loader is not None
    sys.modules[_NAME] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules[_NAME])

control_plane = sys.modules[_NAME].control_plane
