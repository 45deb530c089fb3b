"""The uri type: parsing each form once, pvc mount roots, s3 downloads (a fake downloader)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

from vlmr1_core.uri import (
    DEFAULT_PVC_ROOT,
    ParsedUri,
    StorageError,
    boto3_download,
    parse_uri,
    pvc_claim,
    pvc_root,
    resolve_local_path,
)


@pytest.mark.parametrize(
    ("uri", "scheme", "authority", "path"),
    [
        ("runs/rec", None, "", "runs/rec"),
        ("/abs/model", None, "", "/abs/model"),
        ("Qwen/Qwen2.5-VL-3B-Instruct", None, "", "Qwen/Qwen2.5-VL-3B-Instruct"),
        ("pvc://data", "pvc", "data", ""),
        ("pvc://data/rec/train.jsonl", "pvc", "data", "rec/train.jsonl"),
        ("s3://bucket/runs/a/", "s3", "bucket", "runs/a"),
        ("hf://Qwen/Qwen2.5-VL-3B-Instruct", "hf", "Qwen", "Qwen2.5-VL-3B-Instruct"),
        ("builtin://tiny-qwen2.5-vl", "builtin", "tiny-qwen2.5-vl", ""),
    ],
)
def test_parse_uri(uri: str, scheme: str | None, authority: str, path: str) -> None:
    assert parse_uri(uri) == ParsedUri(uri=uri, scheme=scheme, authority=authority, path=path)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("pvc://", "pvc://<claim>/<path>"),
        ("pvc://data/../etc", "without '..'"),
        ("s3://bucket", "s3://<bucket>"),
        ("hf://not a repo", "hf://<org>/<name>"),
        ("gs://bucket/model", "unknown scheme gs://"),
    ],
)
def test_malformed_uris_are_errors_naming_the_form(uri: str, message: str) -> None:
    with pytest.raises(StorageError, match=re.escape(message)):
        parse_uri(uri)


def test_pvc_uris_name_the_mount(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLMR1_PVC_ROOT", raising=False)
    assert pvc_root() == Path(DEFAULT_PVC_ROOT) == Path("/mnt/pvc")
    assert resolve_local_path("pvc://models/qwen/7b") == Path("/mnt/pvc/models/qwen/7b")
    assert resolve_local_path("pvc://data") == Path("/mnt/pvc/data")
    assert resolve_local_path("pvc://data/x", mount_root=Path("/claims")) == Path("/claims/data/x")
    monkeypatch.setenv("VLMR1_PVC_ROOT", "/volumes")
    assert resolve_local_path("pvc://models/qwen") == Path("/volumes/models/qwen")
    assert pvc_claim("pvc://models/qwen") == "models" and pvc_claim("/volumes/models") is None
    with pytest.raises(StorageError, match=r"without '\.\.'"):
        resolve_local_path("pvc://models/../../etc")


def test_local_paths_are_used_as_they_are(tmp_path: Path) -> None:
    assert resolve_local_path(str(tmp_path / "x.jsonl")) == tmp_path / "x.jsonl"
    with pytest.raises(StorageError, match="does not name a file"):
        resolve_local_path("builtin://tiny-qwen2.5-vl")


def test_s3_object_is_downloaded_once(tmp_path: Path, fake_s3: Any) -> None:
    fake = fake_s3({"train/rec.jsonl": b'{"id": 1}\n'})
    path = resolve_local_path("s3://data/train/rec.jsonl", downloader=fake, cache_root=tmp_path)
    assert path == tmp_path / "s3" / "data" / "train" / "rec.jsonl"
    assert path.read_bytes() == b'{"id": 1}\n'
    assert resolve_local_path("s3://data/train/rec.jsonl", downloader=fake, cache_root=tmp_path) == path
    assert fake.calls == [("data", "train/rec.jsonl")]


def test_failed_s3_download_leaves_nothing_and_retries(tmp_path: Path, fake_s3: Any) -> None:
    def flaky(bucket: str, key: str, dest: Path) -> None:
        dest.write_bytes(b"half")
        raise ConnectionError("reset by peer")

    with pytest.raises(ConnectionError):
        resolve_local_path("s3://data/x.jsonl", downloader=flaky, cache_root=tmp_path)
    assert [p.name for p in (tmp_path / "s3" / "data").iterdir()] == []
    with pytest.raises(StorageError, match="no object or prefix"):
        resolve_local_path("s3://data/x.jsonl", downloader=fake_s3({}), cache_root=tmp_path)
    fake = fake_s3({"x.jsonl": b"ok"})
    assert resolve_local_path("s3://data/x.jsonl", downloader=fake, cache_root=tmp_path).read_bytes() == b"ok"


def test_s3_uri_shape_is_checked(tmp_path: Path, fake_s3: Any) -> None:
    for bad in ("s3://bucket", "s3://bucket/", "s3://bucket/a/../b"):
        with pytest.raises(StorageError, match="s3://<bucket>"):
            resolve_local_path(bad, downloader=fake_s3({}), cache_root=tmp_path)


def test_without_boto3_the_error_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # makes `import boto3` raise ImportError
    with pytest.raises(StorageError, match=r"pip install 'vlmr1\[s3\]'"):
        boto3_download("bucket", "key", tmp_path / "dest")
    with pytest.raises(StorageError, match=r"pip install 'vlmr1\[s3\]'"):
        resolve_local_path("s3://bucket/key", cache_root=tmp_path)


def test_an_s3_endpoint_that_does_not_answer_is_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """boto's connection error becomes one StorageError with the fix (the real client, a closed port)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for name, value in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(StorageError) as info:
        resolve_local_path("s3://data/train.jsonl", cache_root=tmp_path)
    message = str(info.value)
    assert message.startswith("s3://data/train.jsonl: cannot download: cannot list s3://data/train.jsonl: ")
    assert f'Could not connect to the endpoint URL: "http://127.0.0.1:{port}/data' in message
    assert message.endswith("to fix: check the uri, AWS_ENDPOINT_URL and that the store is up")
