"""Makes the ``control_plane`` fixture (fixtures.py) available to tests in this folder.

fixtures.py is loaded by path so this works with ``--import-mode=importlib`` and without
``__init__.py`` files; the module is cached in sys.modules so other conftests that load it
the same way reuse it (each declaring conftest still gets its own control plane instance).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_NAME = "vlmr1_controlplane_fixtures"
if _NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_NAME, Path(__file__).with_name("fixtures.py"))
    assert _spec is not None and _spec.loader is not None
    sys.modules[_NAME] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules[_NAME])

control_plane = sys.modules[_NAME].control_plane
