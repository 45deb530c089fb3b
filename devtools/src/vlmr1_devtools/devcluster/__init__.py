"""A local Kubernetes control plane for development and integration tests.

The project's CRDs and custom resources live on a real apiextensions-apiserver (with etcd);
core objects (Pods, Services, ConfigMaps, Events, Namespaces, Leases) and Volcano PodGroups live
in a simulated API inside a front proxy that also serves discovery. Tests (or a person) play the
kubelet by patching pod status. See cluster.py for the layout, store.py for what the simulated
API does and does not do, daemon.py for ``vlmr1 dev cluster up|down``.

Importing this package is cheap: aiohttp and cryptography are imported only by the processes
and functions that need them.
"""

from __future__ import annotations

from vlmr1_devtools.devcluster.cluster import ControlPlane
from vlmr1_devtools.devcluster.errors import ControlPlaneError, StatusError
from vlmr1_devtools.devcluster.processes import BUILD_SCRIPT, Binaries, find_binaries

__all__ = ["BUILD_SCRIPT", "Binaries", "ControlPlane", "ControlPlaneError", "StatusError", "find_binaries"]
