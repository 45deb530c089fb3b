"""Where a uri's bytes are: local paths for pvc:// and s3://, from_pretrained arguments for models.

The uri forms are those of :data:`vlmr1_trainer.config.URI_PATTERN`:

* a local path, used as it is;
* ``pvc://claim/path``: the claim is mounted by the operator at ``$VLMR1_PVC_ROOT/<claim>``
  (default ``/mnt/pvc``, the operator's ``pvcRoot`` setting, which it passes to the pods
  in that variable), so the uri names ``/mnt/pvc/<claim>/<path>``;
* ``s3://bucket/key-or-prefix``: downloaded once into ``$VLMR1_CACHE_DIR/s3/<bucket>/<key>``
  by a pluggable downloader (boto3 when installed; it is not a dependency of vlmr1);
* ``hf://org/name`` and bare hub ids ``org/name``: handed to ``from_pretrained`` unchanged
  (the hub client does its own caching, under ``HF_HOME``);
* ``builtin://name``: a tiny random-weight model built offline and cached
  (:mod:`vlmr1_trainer.vlm.builtin`).

This module imports only the standard library; boto3 and the model builders are imported
when a uri needs them.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "COMPLETE_MARKER",
    "Downloader",
    "ModelSource",
    "StorageError",
    "boto3_download",
    "cache_dir",
    "pvc_root",
    "resolve_local_path",
    "resolve_model",
]

Downloader = Callable[[str, str, Path], None]
"""``(bucket, key_or_prefix, destination)``: write the object (as the file ``destination``) or
every object under the prefix (as files below the folder ``destination``, keeping their
paths relative to the prefix)."""

COMPLETE_MARKER = ".vlmr1-complete"
"""Written next to a finished s3 download, so an interrupted one is fetched again."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_SCHEME = re.compile(r"^([a-z0-9]+)://(.*)$")


class StorageError(RuntimeError):
    """A uri that cannot be resolved (unknown scheme, missing path, failed download)."""


SourceKind = Literal["local", "pvc", "s3", "hub", "builtin"]


@dataclass(frozen=True)
class ModelSource:
    """What ``from_pretrained`` is called with for a model uri."""

    uri: str
    """The uri as the user wrote it."""
    pretrained: str
    """The first argument of ``from_pretrained``: a local folder or a hub id."""
    kind: SourceKind
    """Which uri form it was."""
    revision: str | None = None
    """Hub revision; only for hub ids (local folders have none)."""

    @property
    def is_local(self) -> bool:
        """True when ``pretrained`` is a folder on this machine."""
        return self.kind != "hub"


def cache_dir() -> Path:
    """The vlmr1 cache root: ``$VLMR1_CACHE_DIR``, else ``~/.cache/vlmr1``."""
    configured = os.environ.get("VLMR1_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "vlmr1"


def pvc_root() -> Path:
    """Where pvc:// claims are mounted: ``$VLMR1_PVC_ROOT``, else ``/mnt/pvc``."""
    return Path(os.environ.get("VLMR1_PVC_ROOT") or "/mnt/pvc")


def _split_scheme(uri: str) -> tuple[str | None, str]:
    match = _SCHEME.match(uri)
    if match is None:
        return None, uri
    return match.group(1), match.group(2)


def _pvc_path(rest: str, uri: str) -> Path:
    claim, _, sub = rest.partition("/")
    if not claim or ".." in Path(sub).parts:
        raise StorageError(f"{uri!r}: expected pvc://<claim>/<path> without '..'")
    return pvc_root() / claim / sub if sub else pvc_root() / claim


def _s3_parts(rest: str, uri: str) -> tuple[str, str]:
    bucket, _, key = rest.partition("/")
    key = key.strip("/")
    if not bucket or not key or ".." in key.split("/"):
        raise StorageError(f"{uri!r}: expected s3://<bucket>/<key or prefix> without '..'")
    return bucket, key


def resolve_local_path(uri: str, *, downloader: Downloader | None = None, cache_root: Path | None = None) -> Path:
    """The local path of a file or folder uri: a path, ``pvc://`` or ``s3://`` (downloaded).

    The path is not checked for existence except after an s3 download, so callers report a
    missing file in their own terms (dataset line, checkpoint folder).
    """
    scheme, rest = _split_scheme(uri)
    if scheme is None:
        return Path(uri).expanduser()
    if scheme == "pvc":
        return _pvc_path(rest, uri)
    if scheme == "s3":
        bucket, key = _s3_parts(rest, uri)
        return download_s3(bucket, key, downloader=downloader, cache_root=cache_root)
    raise StorageError(f"{uri!r}: {scheme}:// does not name a file or folder; use a path, pvc:// or s3://")


def download_s3(bucket: str, key: str, *, downloader: Downloader | None = None, cache_root: Path | None = None) -> Path:
    """Fetch ``s3://bucket/key`` once into the cache and return its local path.

    The download goes to a temporary sibling and is renamed into place when complete, so
    a crash never leaves a partial copy that a later run would take for the real one.
    """
    root = (cache_root or cache_dir()) / "s3" / bucket
    dest = root / key
    marker = dest.parent / f"{dest.name}{COMPLETE_MARKER}"
    if marker.exists() and dest.exists():
        return dest
    fetch = downloader or boto3_download
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        target = staging / dest.name
        fetch(bucket, key, target)
        if not target.exists():
            raise StorageError(f"s3://{bucket}/{key}: no object or prefix of that name")
        if dest.is_dir():
            shutil.rmtree(dest)
        elif dest.exists():
            dest.unlink()
        target.rename(dest)
        marker.touch()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def boto3_download(bucket: str, key: str, dest: Path) -> None:
    """Default :data:`Downloader`: boto3 with its usual credentials and ``AWS_ENDPOINT_URL``.

    A key that is an object is written to ``dest``; otherwise every object below
    ``key/`` is written under the folder ``dest``.
    """
    try:
        import boto3  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        raise StorageError(
            "s3:// uris need boto3, which vlmr1 does not install: pip install boto3 "
            "(credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, endpoint from AWS_ENDPOINT_URL)"
        ) from exc
    client = boto3.client("s3")
    prefix = key.rstrip("/") + "/"
    objects: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
        objects.extend(str(item["Key"]) for item in page.get("Contents", []))
    if key in objects:
        dest.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, key, str(dest))
        return
    for name in objects:
        if not name.startswith(prefix) or name.endswith("/"):
            continue
        relative = name[len(prefix) :]
        if ".." in relative.split("/"):
            raise StorageError(f"s3://{bucket}/{name}: refusing an object name with '..'")
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, name, str(target))


def resolve_model(
    uri: str,
    revision: str | None = None,
    *,
    downloader: Downloader | None = None,
    cache_root: Path | None = None,
    builtin_seed: int | None = None,
) -> ModelSource:
    """Turn a model uri into what ``from_pretrained`` needs (see the module docstring).

    A scheme-less uri is a local path when it exists or looks like one (absolute, ``./``,
    ``../``, ``~``); otherwise an ``org/name`` shaped string is a hub id.
    """
    scheme, rest = _split_scheme(uri)
    if scheme == "hf":
        if not _HUB_ID.match(rest):
            raise StorageError(f"{uri!r}: expected hf://<org>/<name>")
        return ModelSource(uri=uri, pretrained=rest, kind="hub", revision=revision)
    if scheme == "builtin":
        from vlmr1_trainer.vlm.builtin import ensure_builtin

        path = ensure_builtin(rest, cache_root=cache_root, seed=builtin_seed)
        return ModelSource(uri=uri, pretrained=str(path), kind="builtin")
    if scheme in ("pvc", "s3"):
        path = resolve_local_path(uri, downloader=downloader, cache_root=cache_root)
        return ModelSource(uri=uri, pretrained=str(path), kind="pvc" if scheme == "pvc" else "s3")
    if scheme is not None:
        raise StorageError(f"{uri!r}: unknown scheme {scheme}://; use hf://, s3://, pvc://, builtin:// or a path")
    path = Path(uri).expanduser()
    looks_like_path = uri.startswith(("/", "./", "../", "~")) or uri in (".", "..")
    if path.exists() or looks_like_path or not _HUB_ID.match(uri):
        return ModelSource(uri=uri, pretrained=str(path), kind="local")
    return ModelSource(uri=uri, pretrained=uri, kind="hub", revision=revision)
