"""The ``control_plane`` fixture (a real API server, vlmr1_devtools.devcluster) for this folder."""

from vlmr1_devtools.devcluster.fixtures import control_plane  # noqa: F401  (a fixture)
