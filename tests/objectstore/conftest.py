"""A real S3 API server for the object-storage tests: moto's server mode, in its own process.

tests/tools/install-moto.sh installs it once (cached outside the repository); the session
starts it on a free port and each test gets a fresh bucket and the environment a pod gets from
its objectStore Secret (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_REGION).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://localhost:<port>`` of a running moto S3 server."""
    install = subprocess.run(
        ["bash", str(REPO / "tests" / "tools" / "install-moto.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert install.returncode == 0, install.stderr[-2000:]
    port = _free_port()
    log = (tmp_path_factory.mktemp("moto") / "server.log").open("w")
    proc = subprocess.Popen(
        [install.stdout.strip(), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while True:  # wait until it accepts connections (or dies)
        assert proc.poll() is None, f"moto_server exited {proc.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "moto_server did not listen within 60 s"
            time.sleep(0.1)
    # A host name, not an IP: the client must use path-style addressing by itself.
    yield f"http://localhost:{port}"
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """The objectStore Secret's variables set, nothing else of boto3's chain (no files, no instance metadata)."""
    env = {
        "AWS_ACCESS_KEY_ID": "vlmr1-test",
        "AWS_SECRET_ACCESS_KEY": "vlmr1-test-secret",
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_REGION": "us-east-1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "VLMR1_S3_ADDRESSING_STYLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("VLMR1_CACHE_DIR", str(tmp_path / "cache"))
    return env


@pytest.fixture
def bucket(s3_env: dict[str, str]) -> str:
    """A new, empty bucket on the server."""
    from vlmr1_core.objectstore import s3_client

    name = f"vlmr1-{uuid.uuid4().hex[:12]}"
    s3_client().create_bucket(Bucket=name)
    return name
