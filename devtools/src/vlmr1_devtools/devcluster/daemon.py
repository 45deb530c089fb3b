"""The dev cluster as a background service: ``vlmr1 dev cluster up|down``.

``up`` builds (or reuses) the API server binaries in the foreground, so a first build shows its
progress and its errors, then starts ``python -m vlmr1_devtools.devcluster serve`` in a new
session (it survives the command), records its pid in ``<workdir>/devcluster.pid`` and waits
until the serve process has written ``<workdir>/state.json`` (written once the control plane
answers /readyz and the CRDs are established). ``down`` sends SIGTERM to the serve process,
which stops its children; whatever is left after a grace period is killed, children included
(their process groups are in state.json). Both are idempotent.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from vlmr1_devtools.devcluster.cluster import ControlPlane, child_env
from vlmr1_devtools.devcluster.errors import ControlPlaneError
from vlmr1_devtools.devcluster.processes import find_binaries, kill_group

PID_FILE = "devcluster.pid"
STATE_FILE = "state.json"
SERVE_LOG = "serve.log"


def default_dir() -> Path:
    """``${VLMR1_CACHE_DIR:-~/.cache/vlmr1}/devcluster``: the default workdir and kubeconfig home."""
    root = os.environ.get("VLMR1_CACHE_DIR") or str(Path.home() / ".cache" / "vlmr1")
    return Path(root) / "devcluster"


def alive(pid: int) -> bool:
    """Is pid a live (not zombie) process?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _is_serve(pid: int) -> bool:
    """Guard against pid reuse: is pid our serve process?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"vlmr1_devtools.devcluster" in cmdline and b"serve" in cmdline and alive(pid)


def running_pid(workdir: Path) -> int | None:
    try:
        pid = int((workdir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_serve(pid) else None


def read_state(workdir: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((workdir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state


def _wait_for_state(workdir: Path, pid: int, timeout: float, log: Path) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while True:
        state = read_state(workdir)
        if state and state.get("pid") == pid:
            return state
        if not alive(pid):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:]) if log.exists() else ""
            raise ControlPlaneError(f"the dev cluster exited during start-up; last lines of {log}:\n{tail}")
        if time.monotonic() > end:
            raise ControlPlaneError(f"the dev cluster did not become ready within {timeout:.0f}s; see {log}")
        time.sleep(0.1)


def up(workdir: Path, kubeconfig: Path, timeout: float = 300.0) -> tuple[bool, dict[str, Any]]:
    """Start the dev cluster in the background; returns (started now?, state)."""
    workdir, kubeconfig = workdir.resolve(), kubeconfig.resolve()
    pid = running_pid(workdir)
    if pid is not None:  # running, or still starting: wait for it to be ready
        return False, _wait_for_state(workdir, pid, timeout, workdir / SERVE_LOG)
    find_binaries(show_progress=True)  # a cold build happens here, in the foreground
    workdir.mkdir(parents=True, exist_ok=True)
    for name in (PID_FILE, STATE_FILE):
        (workdir / name).unlink(missing_ok=True)
    log = workdir / SERVE_LOG
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vlmr1_devtools.devcluster",
                "serve",
                f"--workdir={workdir}",
                f"--kubeconfig={kubeconfig}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=child_env(),
            start_new_session=True,  # detached: survives this command and its terminal
        )
    (workdir / PID_FILE).write_text(f"{popen.pid}\n")
    try:
        return True, _wait_for_state(workdir, popen.pid, timeout, log)
    except ControlPlaneError:
        down(workdir)
        raise


def down(workdir: Path, grace: float = 20.0) -> bool:
    """Stop the dev cluster of workdir; returns whether one was running."""
    workdir = workdir.resolve()
    pid, state = running_pid(workdir), read_state(workdir) or {}
    if pid is not None:
        # The serve process stops its children on SIGTERM (apiserver's grace included).
        kill_group(pid, grace, lambda: alive(pid))
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)  # reap it when it is our child (tests run up() in-process)
    for child in state.get("children", []):
        if alive(child) and os.getpgid(child) == child:  # still the group leader we started
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child, signal.SIGKILL)
    for name in (PID_FILE, STATE_FILE):
        (workdir / name).unlink(missing_ok=True)
    kubeconfig = state.get("kubeconfig")
    if kubeconfig:
        Path(kubeconfig).unlink(missing_ok=True)
    return pid is not None


def serve(workdir: Path, kubeconfig: Path) -> int:
    """Run the control plane in the foreground until SIGTERM/SIGINT; publish state.json once ready."""
    stop = threading.Event()
    started = False

    def on_signal(signum: int, _frame: object) -> None:
        if not started:
            raise SystemExit(128 + signum)  # abort start-up: ControlPlane.start cleans up
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    t0 = time.monotonic()
    cp = ControlPlane(workdir, kubeconfig=kubeconfig, start_timeout=120.0)
    cp.start()
    started = True
    try:
        version = cp.binaries.k8s_version if cp.binaries else "?"
        state = {
            "pid": os.getpid(),
            "server_url": cp.server_url,
            "kubeconfig": str(cp.kubeconfig),
            "workdir": str(cp.workdir),
            "k8s_version": version,
            "children": cp.pids(),
        }
        tmp = workdir / f"{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(workdir / STATE_FILE)  # atomic: `up` never reads half a file
        print(f"dev cluster up in {time.monotonic() - t0:.1f}s (Kubernetes {version}) at {cp.server_url}", flush=True)
        stop.wait()
    finally:
        cp.stop()
        (workdir / STATE_FILE).unlink(missing_ok=True)
    return 0
