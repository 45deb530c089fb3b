"""`vlmr1 dev cluster up|down|status` end to end: a detached control plane that survives the
command, idempotent up and down, and kubectl working with the kubeconfig it writes."""

from __future__ import annotations

import argparse
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from vlmr1_devtools import cli as dev
from vlmr1_devtools.devcluster import daemon, find_binaries


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="vlmr1")
    dev.register(parser.add_subparsers(required=True))
    args = parser.parse_args(list(argv))
    code: int = args.handler(args)
    return code


def test_default_dir_follows_the_cache_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VLMR1_CACHE_DIR", str(tmp_path))
    assert daemon.default_dir() == tmp_path / "devcluster"
    monkeypatch.delenv("VLMR1_CACHE_DIR")
    assert daemon.default_dir() == Path.home() / ".cache" / "vlmr1" / "devcluster"


def test_down_and_status_without_a_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("dev", "cluster", "down", "--workdir", str(tmp_path)) == 0
    assert run_cli("dev", "cluster", "status", "--workdir", str(tmp_path)) == 1
    assert "no dev cluster running" in capsys.readouterr().out


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    if os.environ.get("VLMR1_SKIP_APISERVER") == "1":
        pytest.skip("VLMR1_SKIP_APISERVER=1: real API server tests skipped on request")
    yield tmp_path / "dc"
    daemon.down(tmp_path / "dc")  # whatever the test did


@pytest.mark.apiserver
def test_up_is_idempotent_and_down_cleans_up(workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = tmp_path / "kube" / "config"
    up = ("dev", "cluster", "up", "--workdir", str(workdir), "--kubeconfig", str(kubeconfig))
    assert run_cli(*up) == 0
    out = capsys.readouterr().out
    assert f"export KUBECONFIG={kubeconfig}" in out and "dev cluster running at http://127.0.0.1:" in out
    state = daemon.read_state(workdir)
    assert state is not None and daemon.alive(state["pid"])
    serve_pid = state["pid"]

    assert run_cli(*up) == 0  # a second up finds the first
    assert "already running" in capsys.readouterr().out
    assert daemon.read_state(workdir) == state

    kubectl = str(find_binaries().kubectl)
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}

    def k(*args: str, stdin: str | None = None) -> str:
        proc = subprocess.run([kubectl, f"--cache-dir={tmp_path / 'kc'}", *args], env=env, input=stdin,
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    crds = k("get", "crds", "-o", "name")
    for crd in ("grpojobs.vlmr1.io", "vlmservices.vlmr1.io", "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        assert f"customresourcedefinition.apiextensions.k8s.io/{crd}" in crds
    example = Path(__file__).resolve().parents[2] / "examples" / "grpojob-rec.yaml"
    assert "created" in k("apply", "-n", "default", "-f", str(example))
    assert "Pending" in k("run", "probe", "--image=busybox", "-o", "jsonpath={.status.phase}")
    assert run_cli("dev", "cluster", "status", "--workdir", str(workdir)) == 0

    assert run_cli("dev", "cluster", "down", "--workdir", str(workdir)) == 0
    assert "dev cluster stopped" in capsys.readouterr().out
    assert not daemon.alive(serve_pid)
    assert all(not daemon.alive(pid) for pid in state["children"])
    assert not (workdir / daemon.PID_FILE).exists() and not (workdir / daemon.STATE_FILE).exists()
    assert not kubeconfig.exists()
    assert run_cli("dev", "cluster", "down", "--workdir", str(workdir)) == 0  # idempotent
    assert "no dev cluster running" in capsys.readouterr().out
