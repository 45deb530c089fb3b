"""A real Kubernetes API server for CRD tests: etcd + apiextensions-apiserver + a front proxy.

Third-party imports: ``cryptography`` (certificates, imported by ControlPlane.start)
and ``aiohttp`` with its dependencies ``multidict`` and ``yarl`` (the front proxy, imported
only inside the proxy subprocess).
Everything else is the standard library.

Layout of a running control plane (all on 127.0.0.1, free ports picked at start):

    kubectl / kopf --http--> front proxy --https + client cert--> apiextensions-apiserver --> etcd

The standalone apiextensions-apiserver serves CRDs and custom resources with real
validation (structural schemas, CEL, pruning, defaulting), resourceVersion conflicts,
the status subresource and watches. What it lacks is served by the proxy:

* ``/apis``: the group list (normally kube-aggregator's job), computed per request from the
  CRDs so newly established groups show up; ``/api`` and ``/api/v1``: the legacy core group
  with only ``namespaces`` and ``services``. Discovery is answered in the legacy JSON form
  whatever the Accept header says; client-go (kubectl, operators) then falls back from the
  aggregated (apidiscovery.k8s.io/v2) form on its own.
* ``/openapi/v3``: upstream's index plus a stub ``api/v1`` document. kubectl leaves validation
  to the server (``fieldValidation=Strict``) only if it finds that parameter there; otherwise
  it wants ``/openapi/v2``, which the standalone server lacks. No CRD OpenAPI is published
  (the server runs its OpenAPI controllers only inside kube-apiserver): ``kubectl explain``
  and client-side schema validation of custom resources do not work; the server still
  validates everything.
* ``/api/v1/namespaces`` (kept in memory, ``default`` & friends pre-created) and
  ``/api/v1/services`` (always empty): the apiserver itself runs a Service informer
  (for conversion webhooks) against its ``--kubeconfig``, which points at this proxy, and
  ``/readyz`` stays red until that informer has synced.

The proxy is plain HTTP without authentication: anything on this machine that can reach the
port acts as ``system:masters``. That is fine for tests; do not expose it.

CLI: ``python controlplane.py up --workdir DIR`` runs one in the foreground.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import datetime as dt
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build-apiserver.sh"
HOST = "127.0.0.1"
# Admission plugins that need core APIs (namespaces, webhooks, policies) we do not have.
DISABLED_ADMISSION = (
    "NamespaceLifecycle,MutatingAdmissionPolicy,MutatingAdmissionWebhook,"
    "ValidatingAdmissionPolicy,ValidatingAdmissionWebhook"
)


class ControlPlaneError(RuntimeError):
    pass


# --------------------------------------------------------------------------- binaries


@dataclass(frozen=True)
class Binaries:
    apiserver: Path
    etcd: Path
    kubectl: Path
    k8s_version: str


def find_binaries(build_script: Path = BUILD_SCRIPT, timeout: float = 1800) -> Binaries:
    """Run build-apiserver.sh (instant when cached) and read what it built."""
    proc = subprocess.run(["bash", str(build_script)], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise ControlPlaneError(f"{build_script} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    out_dir = Path(proc.stdout.strip().splitlines()[-1])
    env: dict[str, str] = {}
    for line in (out_dir / "versions.env").read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value
    return Binaries(
        apiserver=Path(env["APISERVER"]),
        etcd=Path(env["ETCD"]),
        kubectl=Path(env["KUBECTL"]),
        k8s_version=env["K8S_VERSION"],
    )


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certs(directory: Path, user: str = "vlmr1-admin") -> Certs:
    """A throwaway CA, a serving cert for 127.0.0.1/localhost and a system:masters client cert."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def name(cn: str, org: str | None = None) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(attrs)

    def builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=7))
        )

    def write(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
        crt, pem = directory / f"{stem}.crt", directory / f"{stem}.key"
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pem.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        pem.chmod(0o600)
        return crt, pem

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("vlmr1-test-ca")
    ca_cert = (
        builder(ca_name, ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, _ = write("ca", ca_cert, ca_key)

    def leaf(
        stem: str, subject: x509.Name, usage: x509.ObjectIdentifier, san: x509.SubjectAlternativeName | None
    ) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        b = builder(subject, ca_name, key).add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if san is not None:
            b = b.add_extension(san, critical=False)
        return write(stem, b.sign(ca_key, hashes.SHA256()), key)

    server_cert, server_key = leaf(
        "apiserver",
        name("localhost"),
        ExtendedKeyUsageOID.SERVER_AUTH,
        x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]),
    )
    # The apiserver's x509 authenticator maps CN -> user name and O -> groups;
    # system:masters is always allowed by the delegated authorizer.
    client_cert, client_key = leaf("admin", name(user, "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH, None)
    return Certs(ca_path, server_cert, server_key, client_cert, client_key)


# --------------------------------------------------------------------------- processes


def free_ports(count: int) -> list[int]:
    """Distinct free ports (all held open while picking, so none is handed out twice)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in socks:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM the child if the Python process dies (even by SIGKILL).

    Note: Linux ties this to the *thread* that forked, so start() from the main thread.
    """
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


def _stop_process(proc: _Proc, grace: float = 2.0) -> None:
    """SIGTERM the whole process group, then SIGKILL what is left.

    The grace is short on purpose: all state is throwaway, and apiextensions-apiserver
    does not finish a SIGTERM shutdown once it serves a CRD (it hangs in a CRD handler).
    """
    p = proc.popen
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if p.poll() is not None:
            break
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            break
        try:
            p.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    # The group may outlive its leader (children); make sure nothing of it survives.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGKILL)


def _wait_until(
    what: str,
    check: Callable[[], bool],
    deadline_s: float,
    procs: Sequence[_Proc],
    interval: float = 0.1,
) -> None:
    """Poll check() until true; fail early (with logs) if a process died, or at the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        for pr in procs:
            if pr.popen.poll() is not None:
                raise ControlPlaneError(
                    f"{pr.name} exited with {pr.popen.returncode} while waiting for {what}; "
                    f"last log lines ({pr.log}):\n{pr.tail()}"
                )
        if check():
            return
        if time.monotonic() > end:
            logs = "\n".join(f"--- {pr.name} ({pr.log}):\n{pr.tail()}" for pr in procs)
            raise ControlPlaneError(f"timed out after {deadline_s}s waiting for {what}\n{logs}")
        time.sleep(interval)


def _http_ok(url: str, context: ssl.SSLContext | None = None, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout) as r:
            code: int = r.status
            return 200 <= code < 300
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


# --------------------------------------------------------------------------- control plane


class ControlPlane:
    """etcd + apiextensions-apiserver + discovery/forwarding proxy, all on 127.0.0.1.

    Usage::

        with ControlPlane(tmp_path) as cp:
            cp.kubectl("apply", "-f", "crd.yaml")
            os.environ["KUBECONFIG"] = str(cp.kubeconfig)
    """

    def __init__(
        self,
        workdir: Path,
        binaries: Binaries | None = None,
        start_timeout: float = 90.0,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.binaries = binaries
        self.start_timeout = start_timeout
        self.kubeconfig = self.workdir / "kubeconfig"
        self.server_url = ""  # the proxy; what clients use
        self.apiserver_url = ""  # the real server (TLS + client cert), for debugging
        self.certs: Certs | None = None
        self._procs: list[_Proc] = []
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
            _stop_process(proc)
        atexit.unregister(self.stop)

    def _spawn(self, name: str, argv: Sequence[str | os.PathLike[str]]) -> _Proc:
        log = self.workdir / f"{name}.log"
        with log.open("ab") as f:
            popen = subprocess.Popen(
                [str(a) for a in argv],
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,  # own process group: killpg reaches its children
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only calls prctl(2)
            )
        proc = _Proc(name, popen, log)
        with self._lock:
            self._procs.append(proc)
        return proc

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        bins = self.binaries or find_binaries()
        self.binaries = bins
        self.certs = certs = make_certs(self.workdir / "pki")
        etcd_port, peer_port, api_port, proxy_port = free_ports(4)
        etcd_url = f"http://{HOST}:{etcd_port}"
        self.apiserver_url = f"https://{HOST}:{api_port}"
        self.server_url = f"http://{HOST}:{proxy_port}"
        self._write_kubeconfig()

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
                "--unsafe-no-fsync",  # test data: speed over durability
                "--log-level=warn",
            ],
        )
        # The proxy only needs to be up before the apiserver's informers look for it;
        # starting it now overlaps its Python start-up with etcd's.
        proxy = self._spawn(
            "proxy",
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "proxy",
                f"--port={proxy_port}",
                f"--upstream={self.apiserver_url}",
                f"--ca={certs.ca}",
                f"--cert={certs.client_cert}",
                f"--key={certs.client_key}",
            ],
        )
        _wait_until("etcd /health", lambda: _http_ok(f"{etcd_url}/health"), self.start_timeout, [etcd, proxy])

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
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--authentication-skip-lookup",
                f"--disable-admission-plugins={DISABLED_ADMISSION}",
                "--enable-priority-and-fairness=false",  # needs flowcontrol APIs
                "--profiling=false",
            ],
        )
        ctx = self.client_ssl_context()
        _wait_until(
            "apiserver /readyz",
            lambda: _http_ok(f"{self.apiserver_url}/readyz", ctx),
            self.start_timeout,
            [etcd, proxy, apiserver],
        )
        _wait_until(
            "proxy /apis",
            lambda: _http_ok(f"{self.server_url}/apis"),
            self.start_timeout,
            [etcd, proxy, apiserver],
        )

    # -- clients ------------------------------------------------------------

    def client_ssl_context(self) -> ssl.SSLContext:
        """TLS context to talk to the apiserver directly (bypassing the proxy)."""
        assert self.certs is not None
        ctx = ssl.create_default_context(cafile=str(self.certs.ca))
        ctx.load_cert_chain(str(self.certs.client_cert), str(self.certs.client_key))
        return ctx

    def _write_kubeconfig(self) -> None:
        # JSON is valid YAML; kubectl and the kubernetes/kopf clients read it.
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "vlmr1-test", "cluster": {"server": self.server_url}}],
            "users": [{"name": "vlmr1-test", "user": {}}],
            "contexts": [
                {
                    "name": "vlmr1-test",
                    "context": {"cluster": "vlmr1-test", "user": "vlmr1-test", "namespace": "default"},
                }
            ],
            "current-context": "vlmr1-test",
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2) + "\n")

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
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ({p.log}):\n{p.tail()}" for p in self._procs)


# --------------------------------------------------------------------------- front proxy
# Runs in its own process (``controlplane.py proxy ...``) so a busy or blocked test process
# never stalls watches, and stop() can treat it like any other child.


def _protobuf_fields(buf: bytes) -> dict[int, list[bytes]]:
    """Length-delimited fields of one protobuf message (others skipped): just enough to
    read a name out of the protobuf that typed clients (kubectl create ns) send."""
    fields: dict[int, list[bytes]] = {}
    i = 0

    def varint() -> int:
        nonlocal i
        shift = value = 0
        while True:
            byte = buf[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while i < len(buf):
        key = varint()
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            varint()
        elif wire_type == 1:
            i += 8
        elif wire_type == 5:
            i += 4
        elif wire_type == 2:
            size = varint()
            fields.setdefault(number, []).append(buf[i : i + size])
            i += size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
    return fields


def _namespace_metadata(body: bytes, content_type: str) -> dict[str, Any]:
    """metadata of a Namespace sent as JSON, or just its name when sent as Kubernetes
    protobuf (typed clients such as ``kubectl create namespace`` do that)."""
    if content_type == "application/vnd.kubernetes.protobuf":
        # "k8s\0" + runtime.Unknown{2: raw} ; raw = Namespace{1: ObjectMeta{1: name}}
        raw = _protobuf_fields(body[4:])[2][0]
        meta = _protobuf_fields(raw)[1][0]
        return {"name": _protobuf_fields(meta).get(1, [b""])[0].decode()}
    metadata: dict[str, Any] = json.loads(body).get("metadata", {})
    return metadata


def run_proxy(port: int, upstream: str, ca: str, cert: str, key: str) -> None:
    import asyncio

    import aiohttp
    from aiohttp import web
    from multidict import CIMultiDict
    from yarl import URL

    hop_by_hop = {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
    namespaces: dict[str, dict[str, Any]] = {}
    rv_counter = [1]

    def next_rv() -> str:
        rv_counter[0] += 1
        return str(rv_counter[0])

    def namespace_obj(name: str, meta: dict[str, Any] | None = None) -> dict[str, Any]:
        meta = meta or {}
        return {
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "uid": str(uuid.uuid4()),
                "resourceVersion": next_rv(),
                "creationTimestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "labels": {**meta.get("labels", {}), "kubernetes.io/metadata.name": name},
                "annotations": dict(meta.get("annotations", {})),
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }

    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        namespaces[ns] = namespace_obj(ns)

    def status(code: int, reason: str, message: str) -> web.Response:
        return web.json_response(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": reason,
                "code": code,
            },
            status=code,
        )

    core_resources = {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "v1",
        "resources": [
            {
                "name": "namespaces",
                "singularName": "namespace",
                "namespaced": False,
                "kind": "Namespace",
                "verbs": ["create", "delete", "get", "list", "patch", "watch"],
                "shortNames": ["ns"],
            },
            {
                "name": "services",
                "singularName": "service",
                "namespaced": True,
                "kind": "Service",
                "verbs": ["get", "list", "watch"],
                "shortNames": ["svc"],
            },
        ],
    }

    async def serve_list(request: web.Request, kind: str, items: list[dict[str, Any]]) -> web.StreamResponse:
        rv = str(rv_counter[0])
        if request.query.get("watch") not in ("1", "true"):
            return web.json_response(
                {"kind": f"{kind}List", "apiVersion": "v1", "metadata": {"resourceVersion": rv}, "items": items}
            )
        # A watch that never reports changes. For client-go's watch-list (sendInitialEvents)
        # replay the items and end with the bookmark it waits for.
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        if request.query.get("sendInitialEvents") == "true":
            for item in items:
                await resp.write(json.dumps({"type": "ADDED", "object": item}).encode() + b"\n")
            bookmark = {
                "kind": kind,
                "apiVersion": "v1",
                "metadata": {"resourceVersion": rv, "annotations": {"k8s.io/initial-events-end": "true"}},
            }
            await resp.write(json.dumps({"type": "BOOKMARK", "object": bookmark}).encode() + b"\n")
        await asyncio.sleep(float(request.query.get("timeoutSeconds", "1800")))
        return resp

    async def api_versions(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}],
            }
        )

    async def api_v1(request: web.Request) -> web.Response:
        return web.json_response(core_resources)

    async def namespaces_handler(request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name")
        if request.method == "GET" and name is None:
            return await serve_list(request, "Namespace", list(namespaces.values()))
        if request.method == "GET":
            if name in namespaces:
                return web.json_response(namespaces[name])
            return status(404, "NotFound", f'namespaces "{name}" not found')
        if request.method == "POST" and name is None:
            meta = _namespace_metadata(await request.read(), request.content_type)
            new = meta.get("name", "")
            if new in namespaces:
                return status(409, "AlreadyExists", f'namespaces "{new}" already exists')
            created = namespace_obj(new, meta)
            if not request.query.get("dryRun"):
                namespaces[new] = created
            return web.json_response(created, status=201)
        if request.method == "PATCH" and name is not None:
            # Labels and annotations only (what kubectl apply/label/annotate change); merge
            # semantics, null deletes. Enough for re-applying a Namespace manifest.
            if name not in namespaces:
                return status(404, "NotFound", f'namespaces "{name}" not found')
            try:
                patch = json.loads(await request.read())
            except ValueError:
                return status(415, "UnsupportedMediaType", "the test proxy takes JSON patches of metadata only")
            if not isinstance(patch, dict):
                return status(415, "UnsupportedMediaType", "the test proxy takes JSON patches of metadata only")
            meta = namespaces[name]["metadata"]
            for key in ("labels", "annotations"):
                for k, v in (patch.get("metadata", {}).get(key) or {}).items():
                    if v is None:
                        meta.setdefault(key, {}).pop(k, None)
                    else:
                        meta.setdefault(key, {})[k] = v
            meta["resourceVersion"] = next_rv()
            return web.json_response(namespaces[name])
        if request.method == "DELETE" and name is not None:
            if name not in namespaces:
                return status(404, "NotFound", f'namespaces "{name}" not found')
            return web.json_response(namespaces.pop(name))
        return status(405, "MethodNotAllowed", "not supported by the test proxy")

    async def services_handler(request: web.Request) -> web.StreamResponse:
        if request.method != "GET":
            return status(405, "MethodNotAllowed", "services are not supported by the test proxy")
        if request.match_info.get("name"):
            return status(404, "NotFound", f'services "{request.match_info["name"]}" not found')
        return await serve_list(request, "Service", [])

    async def core_other(request: web.Request) -> web.Response:
        return status(404, "NotFound", f"{request.path}: only namespaces and services exist here")

    session: aiohttp.ClientSession | None = None

    async def upstream_json(path: str) -> Any:
        assert session is not None
        async with session.get(URL(upstream + path, encoded=True)) as r:
            if r.status != 200:
                return None
            return json.loads(await r.read())

    async def apis(request: web.Request) -> web.Response:
        crds = await upstream_json("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
        names = sorted({c["spec"]["group"] for c in (crds or {}).get("items", [])})
        # /apis/<group> is served only once a CRD is Established, so this doubles as a filter.
        found = await asyncio.gather(*(upstream_json(f"/apis/{g}") for g in ["apiextensions.k8s.io", *names]))
        groups = [g for g in found if g and g.get("kind") == "APIGroup"]
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

    # kubectl decides whether it may leave validation to the server (fieldValidation) by
    # looking for that parameter on a PATCH operation in OpenAPI v3; for CRDs it looks at
    # the *Namespace* spec in /openapi/v3/api/v1. The standalone server publishes no CRD
    # OpenAPI and no core group, so without this kubectl would fall back to client-side
    # validation, need /openapi/v2 and fail ("failed to download openapi").
    core_openapi = json.dumps(
        {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes (vlmr1 test proxy)", "version": "v1"},
            "paths": {
                "/api/v1/namespaces/{name}": {
                    "patch": {
                        "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "Namespace"},
                        "parameters": [
                            {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                            {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                            {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
                        ],
                        "responses": {"200": {"description": "OK"}},
                    }
                }
            },
        }
    ).encode()
    core_openapi_hash = hashlib.sha512(core_openapi).hexdigest().upper()

    async def openapi_v3_root(request: web.Request) -> web.Response:
        root = await upstream_json("/openapi/v3") or {"paths": {}}
        root["paths"]["api/v1"] = {"serverRelativeURL": f"/openapi/v3/api/v1?hash={core_openapi_hash}"}
        return web.json_response(root)

    async def openapi_v3_core(request: web.Request) -> web.Response:
        return web.Response(body=core_openapi, content_type="application/json")

    async def forward(request: web.Request) -> web.StreamResponse:
        assert session is not None
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in hop_by_hop and k.lower() != "authorization"
        )
        # aiohttp would otherwise add its own Accept-Encoding and hand gzip to a client
        # that never asked for it (we pass bodies through undecoded).
        headers.setdefault("Accept-Encoding", "identity")
        body = await request.read() if request.body_exists else None
        async with session.request(
            request.method,
            URL(upstream + request.raw_path, encoded=True),
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as up:
            resp = web.StreamResponse(
                status=up.status,
                reason=up.reason,
                headers={k: v for k, v in up.headers.items() if k.lower() not in hop_by_hop},
            )
            if up.content_length is not None:
                resp.content_length = up.content_length
            else:
                resp.enable_chunked_encoding()  # watches: pass each chunk through as it comes
            await resp.prepare(request)
            try:
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
            except (ConnectionResetError, aiohttp.ClientConnectionError):
                pass  # client went away (watch closed) or upstream closed
            return resp

    async def main() -> None:
        nonlocal session
        ctx = ssl.create_default_context(cafile=ca)
        ctx.load_cert_chain(cert, key)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx, limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,  # pass gzip through untouched
        )
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_get("/api", api_versions)
        app.router.add_get("/api/", api_versions)
        app.router.add_get("/api/v1", api_v1)
        app.router.add_get("/api/v1/", api_v1)
        app.router.add_route("*", "/api/v1/namespaces", namespaces_handler)
        app.router.add_route("*", "/api/v1/namespaces/{name}", namespaces_handler)
        app.router.add_route("*", "/api/v1/services", services_handler)
        app.router.add_route("*", "/api/v1/namespaces/{ns}/services", services_handler)
        app.router.add_route("*", "/api/v1/namespaces/{ns}/services/{name}", services_handler)
        app.router.add_route("*", "/api/v1/{tail:.*}", core_other)
        app.router.add_get("/openapi/v3", openapi_v3_root)
        app.router.add_get("/openapi/v3/api/v1", openapi_v3_core)
        app.router.add_get("/apis", apis)
        app.router.add_get("/apis/", apis)
        app.router.add_route("*", "/{tail:.*}", forward)
        # Nothing to flush on shutdown; don't let open watches delay exit.
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, HOST, port).start()
        print(f"proxy on http://{HOST}:{port} -> {upstream}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()
            await session.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="run a control plane in the foreground")
    up.add_argument("--workdir", type=Path, required=True)
    px = sub.add_parser("proxy", help="(internal) the front proxy")
    px.add_argument("--port", type=int, required=True)
    for opt in ("--upstream", "--ca", "--cert", "--key"):
        px.add_argument(opt, required=True)
    args = parser.parse_args(argv)

    if args.cmd == "proxy":
        run_proxy(args.port, args.upstream, args.ca, args.cert, args.key)
        return 0

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    t0 = time.monotonic()
    with ControlPlane(args.workdir) as cp:
        version = cp.binaries.k8s_version if cp.binaries else "?"
        print(f"control plane up in {time.monotonic() - t0:.1f}s (Kubernetes {version})")
        print(f"export KUBECONFIG={cp.kubeconfig}")
        print(f"server {cp.server_url}; logs in {cp.workdir}; Ctrl-C to stop", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
