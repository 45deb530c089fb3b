"""Child processes of the local control plane: finding (or building) the binaries, free ports,
starting with a log file, waiting with a deadline, stopping a whole process group."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vlmr1_devtools.devcluster.errors import ControlPlaneError

HOST = "127.0.0.1"
#: Shipped as package data; tests/controlplane/build-apiserver.sh execs this copy.
BUILD_SCRIPT = Path(__file__).resolve().with_name("build-apiserver.sh")


@dataclass(frozen=True)
class Binaries:
    apiserver: Path
    etcd: Path
    kubectl: Path
    k8s_version: str


def find_binaries(build_script: Path = BUILD_SCRIPT, timeout: float = 1800, show_progress: bool = False) -> Binaries:
    """Run build-apiserver.sh (instant when cached) and read what it built.

    With show_progress the script's stderr (a cold build takes minutes) goes to ours."""
    try:
        proc = subprocess.run(
            ["bash", str(build_script)],
            stdout=subprocess.PIPE,
            stderr=None if show_progress else subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ControlPlaneError(f"{build_script} could not run: {exc}") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or "")[-4000:] if not show_progress else "(see its output above)"
        raise ControlPlaneError(
            f"{build_script} failed (exit {proc.returncode}); the first build needs root (or sudo) "
            f"and the Debian mirror of this machine's apt configuration:\n{detail}"
        )
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


def free_ports(count: int) -> list[int]:
    """Distinct free ports (all held open while picking, so none is handed out twice)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in socks:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def die_with_parent() -> None:
    """preexec_fn: SIGTERM the child if the Python process dies (even by SIGKILL).

    Linux ties this to the *thread* that forked, so start children from the main thread.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Proc:
    """A started child: its Popen and the log its stdout and stderr go to."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


def spawn(name: str, argv: Sequence[str | os.PathLike[str]], workdir: Path, env: dict[str, str] | None = None) -> Proc:
    """Start a child in its own process group (so killpg reaches its children), logging to
    ``workdir/<name>.log``, dying with us."""
    log = workdir / f"{name}.log"
    with log.open("ab") as f:
        popen = subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only calls prctl(2)
        )
    return Proc(name, popen, log)


def kill_group(pgid: int, grace: float, is_alive: Callable[[], bool]) -> None:
    """SIGTERM a process group, wait up to grace seconds for is_alive() to turn false, SIGKILL."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    end = time.monotonic() + grace
    while is_alive() and time.monotonic() < end:
        time.sleep(0.05)
    # The group may outlive its leader (children); make sure nothing of it survives.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def stop_process(proc: Proc, grace: float = 2.0) -> None:
    """Stop a child and its process group.

    The grace is short on purpose: all state is throwaway, and apiextensions-apiserver does not
    finish a SIGTERM shutdown once it serves a CRD (it hangs in a CRD handler).
    """
    p = proc.popen
    if p.poll() is None:
        kill_group(p.pid, grace, lambda: p.poll() is None)
    with contextlib.suppress(subprocess.TimeoutExpired):
        p.wait(timeout=5.0)


def wait_until(
    what: str,
    check: Callable[[], bool],
    deadline_s: float,
    procs: Sequence[Proc],
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


def http_ok(url: str, context: ssl.SSLContext | None = None, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout) as r:
            code: int = r.status
            return 200 <= code < 300
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False
