"""The local control plane: etcd + apiextensions-apiserver + the front proxy, all on 127.0.0.1.

    kubectl / kopf --http--> front proxy --https + client cert--> apiextensions-apiserver --> etcd

The standalone apiextensions-apiserver serves CRDs and custom resources with real validation
(structural schemas, CEL, pruning, defaulting), resourceVersion conflicts, the status subresource
and watches. The front proxy (proxy.py) serves discovery and a simulated core API (Pods,
Services, ConfigMaps, Events, PodGroups, Leases, Namespaces) in its own memory, and forwards the
rest. The apiserver itself runs a Service informer against its ``--kubeconfig``, which points at
the proxy, and ``/readyz`` stays red until that has synced.

Every start is fresh (etcd's data directory is wiped): the simulated objects live in the proxy's
memory, and custom resources outliving them would make no sense.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
from pathlib import Path

from vlmr1_devtools.devcluster import crds as crd_install
from vlmr1_devtools.devcluster.certs import Certs, make_certs
from vlmr1_devtools.devcluster.errors import ControlPlaneError
from vlmr1_devtools.devcluster.processes import (
    HOST,
    Binaries,
    Proc,
    find_binaries,
    free_ports,
    http_ok,
    spawn,
    stop_process,
    wait_until,
)
from vlmr1_operator.settings import PEERING_NAME

# Admission plugins that need core APIs (namespaces, webhooks, policies) we do not have.
DISABLED_ADMISSION = (
    "NamespaceLifecycle,MutatingAdmissionPolicy,MutatingAdmissionWebhook,"
    "ValidatingAdmissionPolicy,ValidatingAdmissionWebhook"
)
#: The directory holding the vlmr1_operator package (for the proxy child's PYTHONPATH).
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def child_env() -> dict[str, str]:
    """os.environ with this package importable (also when running from a source tree)."""
    paths = [str(PACKAGE_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


class ControlPlane:
    """etcd + apiextensions-apiserver + discovery/simulation proxy, all on 127.0.0.1.

    Usage::

        with ControlPlane(tmp_path) as cp:
            cp.kubectl("apply", "-f", "crd.yaml")
            os.environ["KUBECONFIG"] = str(cp.kubeconfig)

    install_crds: also install kopf's peering CRDs and vlmr1's CRDs (crds.py) before start()
    returns. kubeconfig: where to write the clients' kubeconfig (default ``workdir/kubeconfig``);
    the apiserver always gets its own copy in the workdir.
    """

    def __init__(
        self,
        workdir: Path,
        binaries: Binaries | None = None,
        start_timeout: float = 90.0,
        kubeconfig: Path | None = None,
        install_crds: bool = True,
        proxy_port: int | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.binaries = binaries
        self.start_timeout = start_timeout
        self.kubeconfig = Path(kubeconfig).resolve() if kubeconfig else self.workdir / "kubeconfig"
        self.install_crds = install_crds
        self.proxy_port = proxy_port
        self.server_url = ""  # the proxy; what clients use
        self.apiserver_url = ""  # the real server (TLS + client cert), for debugging
        self.certs: Certs | None = None
        self._procs: list[Proc] = []
        self._lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        if self._procs:
            raise ControlPlaneError("already started")
        atexit.register(self.stop)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        with self._lock:
            procs, self._procs = self._procs, []
        # Reverse order: clients before the store they talk to.
        for proc in reversed(procs):
            stop_process(proc)
        atexit.unregister(self.stop)

    def pids(self) -> list[int]:
        """Process (and process group) ids of the children, for a last-resort kill."""
        with self._lock:
            return [p.popen.pid for p in self._procs]

    def _spawn(self, name: str, argv: list[str | os.PathLike[str]], env: dict[str, str] | None = None) -> Proc:
        proc = spawn(name, argv, self.workdir, env)
        with self._lock:
            self._procs.append(proc)
        return proc

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        bins = self.binaries or find_binaries()
        self.binaries = bins
        self.certs = certs = make_certs(self.workdir / "pki")
        etcd_port, peer_port, api_port, proxy_port = free_ports(4)
        proxy_port = self.proxy_port or proxy_port
        etcd_url = f"http://{HOST}:{etcd_port}"
        self.apiserver_url = f"https://{HOST}:{api_port}"
        self.server_url = f"http://{HOST}:{proxy_port}"
        internal_kubeconfig = self.workdir / "apiserver.kubeconfig"
        self._write_kubeconfig(internal_kubeconfig)
        self._write_kubeconfig(self.kubeconfig)
        shutil.rmtree(self.workdir / "etcd-data", ignore_errors=True)

        etcd = self._spawn(
            "etcd",
            [
                bins.etcd,
                "--name=vlmr1",
                f"--data-dir={self.workdir / 'etcd-data'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://{HOST}:{peer_port}",
                f"--initial-advertise-peer-urls=http://{HOST}:{peer_port}",
                f"--initial-cluster=vlmr1=http://{HOST}:{peer_port}",
                "--unsafe-no-fsync",  # throwaway data: speed over durability
                "--log-level=warn",
            ],
        )
        # The proxy only needs to be up before the apiserver's informers look for it;
        # starting it now overlaps its Python start-up with etcd's.
        env = child_env()
        proxy = self._spawn(
            "proxy",
            [
                sys.executable,
                "-m",
                "vlmr1_devtools.devcluster",
                "proxy",
                f"--port={proxy_port}",
                f"--upstream={self.apiserver_url}",
                f"--ca={certs.ca}",
                f"--cert={certs.client_cert}",
                f"--key={certs.client_key}",
            ],
            env,
        )
        wait_until("etcd /health", lambda: http_ok(f"{etcd_url}/health"), self.start_timeout, [etcd, proxy])

        apiserver = self._spawn(
            "apiserver",
            [
                bins.apiserver,
                f"--etcd-servers={etcd_url}",
                f"--bind-address={HOST}",
                f"--secure-port={api_port}",
                f"--tls-cert-file={certs.server_cert}",
                f"--tls-private-key-file={certs.server_key}",
                f"--client-ca-file={certs.ca}",
                f"--cert-dir={self.workdir / 'pki'}",
                # Standalone: no core apiserver to delegate to. "Core" is the proxy; its
                # kubeconfig carries no credentials, so token/SAR webhooks just fail, and
                # x509 users in system:masters are authorized before any webhook is asked.
                f"--kubeconfig={internal_kubeconfig}",
                f"--authentication-kubeconfig={internal_kubeconfig}",
                f"--authorization-kubeconfig={internal_kubeconfig}",
                "--authentication-skip-lookup",
                f"--disable-admission-plugins={DISABLED_ADMISSION}",
                "--enable-priority-and-fairness=false",  # needs flowcontrol APIs
                "--profiling=false",
            ],
        )
        procs = [etcd, proxy, apiserver]
        ctx = self.client_ssl_context()
        wait_until("apiserver /readyz", lambda: http_ok(f"{self.apiserver_url}/readyz", ctx), self.start_timeout, procs)
        wait_until("proxy /apis", lambda: http_ok(f"{self.server_url}/apis"), self.start_timeout, procs)
        if self.install_crds:
            crd_install.install(self.server_url, crd_install.all_crds(), timeout=self.start_timeout)
            crd_install.create_cluster_peering(self.server_url, PEERING_NAME)

    # -- clients ------------------------------------------------------------

    def client_ssl_context(self) -> ssl.SSLContext:
        """TLS context to talk to the apiserver directly (bypassing the proxy)."""
        assert self.certs is not None
        ctx = ssl.create_default_context(cafile=str(self.certs.ca))
        ctx.load_cert_chain(str(self.certs.client_cert), str(self.certs.client_key))
        return ctx

    def _write_kubeconfig(self, path: Path) -> None:
        # JSON is valid YAML; kubectl and the kubernetes/kopf clients read it.
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "vlmr1-dev", "cluster": {"server": self.server_url}}],
            "users": [{"name": "vlmr1-dev", "user": {}}],
            "contexts": [
                {"name": "vlmr1-dev", "context": {"cluster": "vlmr1-dev", "user": "vlmr1-dev", "namespace": "default"}}
            ],
            "current-context": "vlmr1-dev",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2) + "\n")

    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG pointing at this control plane."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane (text mode, output captured)."""
        if self.binaries is None or not self.server_url:
            raise ControlPlaneError("control plane not started")
        # A private discovery cache: ports are reused across runs, and a stale
        # ~/.kube/cache entry for the same host:port would hide new CRDs.
        argv = [
            str(self.binaries.kubectl),
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.workdir / 'kubectl-cache'}",
            *args,
        ]
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ({p.log}):\n{p.tail()}" for p in self._procs)
