"""The one uri type: its forms, how each is parsed, and where its bytes are on this machine.

Every process that reads a uri (the operator mounting claims, the trainer reading data and
writing checkpoints, serving fetching a checkpoint, ``vlmr1 promote`` verifying one) parses
it here, and the defaults (where claims are mounted, where downloads are cached) live here:

* a local path, used as it is;
* ``pvc://claim/path``: the claim is mounted in pods at ``$VLMR1_PVC_ROOT/<claim>`` (default
  ``/mnt/pvc``, the operator's ``pvcRoot`` setting, which it passes to the pods in that
  variable), so the uri names ``/mnt/pvc/<claim>/<path>``;
* ``s3://bucket/key-or-prefix``: downloaded once into ``$VLMR1_CACHE_DIR/s3/<bucket>/<key>``
  by a pluggable downloader (default: boto3 through :mod:`vlmr1_core.objectstore`; the
  trainer and serving extras install it, else ``pip install 'vlmr1[s3]'``);
* ``hf://org/name`` and bare hub ids ``org/name``: model ids for ``from_pretrained``;
* ``builtin://name``: a tiny random-weight model the trainer builds offline.

Standard library and pydantic only.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, Field

from vlmr1_core.errors import UserError

if TYPE_CHECKING:
    from vlmr1_core.objectstore import ObjectStore

__all__ = [
    "COMPLETE_MARKER",
    "DEFAULT_PVC_ROOT",
    "URI_PATTERN",
    "Downloader",
    "ParsedUri",
    "StorageError",
    "Uri",
    "boto3_download",
    "cache_dir",
    "download_s3",
    "parse_uri",
    "pvc_claim",
    "pvc_root",
    "resolve_local_path",
]

URI_PATTERN = r"^((hf|s3|pvc|builtin)://[^\s]+|[^:\s]+)$"
"""A hub id (``org/name``), a local path, or one of the schemes hf:// s3:// pvc:// builtin://."""

DEFAULT_PVC_ROOT = "/mnt/pvc"
"""Where pods mount ``pvc://`` claims unless the operator's ``pvcRoot`` setting says otherwise."""

COMPLETE_MARKER = ".vlmr1-complete"
"""Written next to a finished s3 download, so an interrupted one is fetched again."""

Downloader = Callable[[str, str, Path], None]
"""``(bucket, key_or_prefix, destination)``: write the object (as the file ``destination``) or
every object under the prefix (as files below the folder ``destination``, keeping their
paths relative to the prefix)."""

_uri_re = re.compile(URI_PATTERN)
_SCHEME = re.compile(r"^([a-z0-9]+)://(.*)$")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
"""A bare hub id ``org/name`` (or ``name``)."""


def _check_uri(value: str) -> str:
    if not _uri_re.match(value):
        raise ValueError(
            f"unsupported uri {value!r}: use hf://org/name, a hub id org/name, s3://bucket/key, "
            "pvc://claim/path, builtin://name or a path"
        )
    return value


Uri = Annotated[
    str,
    Field(min_length=1, max_length=2048, json_schema_extra={"pattern": URI_PATTERN}),
    AfterValidator(_check_uri),
]
"""A uri field of the API (checked by the same pattern in the CRD and in Python)."""


class StorageError(UserError, RuntimeError):
    """A uri that cannot be resolved (unknown scheme, malformed, missing, failed download)."""


Scheme = Literal["hf", "s3", "pvc", "builtin"]


@dataclass(frozen=True)
class ParsedUri:
    """A uri split once: its scheme (None for a path or a bare hub id) and the parts after it."""

    uri: str
    scheme: Scheme | None
    authority: str
    """The claim (pvc), bucket (s3), organisation or name (hf), model name (builtin); empty for paths."""
    path: str
    """What follows the authority (``rec/run`` of ``pvc://data/rec/run``); the whole uri for paths."""


def parse_uri(uri: str) -> ParsedUri:
    """Split a uri, rejecting malformed pvc:// s3:// hf:// forms and unknown schemes.

    >>> parse_uri("pvc://vlmr1-data/rec/train.jsonl")
    ParsedUri(uri='pvc://vlmr1-data/rec/train.jsonl', scheme='pvc', authority='vlmr1-data', path='rec/train.jsonl')
    >>> parse_uri("runs/rec").scheme is None
    True
    """
    match = _SCHEME.match(uri)
    if match is None:
        return ParsedUri(uri=uri, scheme=None, authority="", path=uri)
    scheme, rest = match.group(1), match.group(2)
    authority, _, path = rest.partition("/")
    if scheme == "pvc":
        if not authority or ".." in Path(path).parts:
            raise StorageError(f"{uri!r}: expected pvc://<claim>/<path> without '..'")
        return ParsedUri(uri=uri, scheme="pvc", authority=authority, path=path)
    if scheme == "s3":
        key = path.strip("/")
        if not authority or not key or ".." in key.split("/"):
            raise StorageError(f"{uri!r}: expected s3://<bucket>/<key or prefix> without '..'")
        return ParsedUri(uri=uri, scheme="s3", authority=authority, path=key)
    if scheme == "hf":
        if not HUB_ID.match(rest):
            raise StorageError(f"{uri!r}: expected hf://<org>/<name>")
        return ParsedUri(uri=uri, scheme="hf", authority=authority, path=path)
    if scheme == "builtin":
        return ParsedUri(uri=uri, scheme="builtin", authority=rest, path="")
    raise StorageError(f"{uri!r}: unknown scheme {scheme}://; use hf://, s3://, pvc://, builtin:// or a path")


def pvc_claim(uri: str) -> str | None:
    """The claim a ``pvc://`` uri names, else None.

    >>> pvc_claim("pvc://vlmr1-checkpoints/rec"), pvc_claim("s3://bucket/key")
    ('vlmr1-checkpoints', None)
    """
    return parse_uri(uri).authority if uri.startswith("pvc://") else None


def pvc_root() -> Path:
    """Where pvc:// claims are mounted: ``$VLMR1_PVC_ROOT``, else :data:`DEFAULT_PVC_ROOT`."""
    return Path(os.environ.get("VLMR1_PVC_ROOT") or DEFAULT_PVC_ROOT)


def cache_dir() -> Path:
    """The vlmr1 cache root: ``$VLMR1_CACHE_DIR``, else ``~/.cache/vlmr1``."""
    configured = os.environ.get("VLMR1_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "vlmr1"


def resolve_local_path(
    uri: str,
    *,
    downloader: Downloader | None = None,
    cache_root: Path | None = None,
    mount_root: Path | None = None,
) -> Path:
    """The local path of a file or folder uri: a path, ``pvc://`` (under ``mount_root``, default
    :func:`pvc_root`) or ``s3://`` (downloaded).

    The path is not checked for existence except after an s3 download, so callers report a
    missing file in their own terms (dataset line, checkpoint folder).
    """
    parsed = parse_uri(uri)
    if parsed.scheme is None:
        return Path(uri).expanduser()
    if parsed.scheme == "pvc":
        root = (mount_root or pvc_root()) / parsed.authority
        return root / parsed.path if parsed.path else root
    if parsed.scheme == "s3":
        return download_s3(parsed.authority, parsed.path, downloader=downloader, cache_root=cache_root)
    raise StorageError(f"{uri!r}: {parsed.scheme}:// does not name a file or folder; use a path, pvc:// or s3://")


def download_s3(bucket: str, key: str, *, downloader: Downloader | None = None, cache_root: Path | None = None) -> Path:
    """Fetch ``s3://bucket/key`` once into the cache and return its local path.

    The download goes to a temporary sibling and is renamed into place when complete, so
    a crash never leaves a partial copy that a later run would take for the real one. With
    the default downloader a cached checkpoint (a folder with a manifest) is compared with the
    bucket's manifest each time and fetched again when it was rewritten (a step saved again
    after a resume).
    """
    root = (cache_root or cache_dir()) / "s3" / bucket
    dest = root / key
    marker = dest.parent / f"{dest.name}{COMPLETE_MARKER}"
    if marker.exists() and dest.exists() and (downloader is not None or not _rewritten(bucket, key, dest)):
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


def _rewritten(bucket: str, key: str, cached: Path) -> bool:
    from vlmr1_core.checkpoints import MANIFEST
    from vlmr1_core.objectstore import ObjectStoreUnavailableError, S3Store

    local = cached / MANIFEST
    if not local.is_file():
        return False
    try:
        remote = S3Store(bucket).get_bytes(f"{key}/{MANIFEST}")
    except ObjectStoreUnavailableError:
        return False  # the cached copy is still verified by whoever reads it
    return remote is not None and remote != local.read_bytes()


def boto3_download(bucket: str, key: str, dest: Path) -> None:
    """Default :data:`Downloader`, through :class:`vlmr1_core.objectstore.S3Store` (boto3, its
    credential chain and ``AWS_ENDPOINT_URL``).

    A key that is an object is written to ``dest``. A prefix holding a ``manifest.json`` is a
    checkpoint: exactly the files its manifest lists are fetched and verified
    (:func:`vlmr1_core.checkpoint_store.download_checkpoint`); a ``checkpoint-<step>`` prefix
    without one is an incomplete upload and refused. Any other prefix is written as the folder
    ``dest``, every object below it.
    """
    from vlmr1_core.objectstore import ObjectStoreUnavailableError, S3Store

    try:
        _fetch(S3Store(bucket), bucket, key, dest)
    except ObjectStoreUnavailableError as exc:
        # Reading is done before anything runs: an endpoint that never answers is a setting to fix.
        raise StorageError(
            f"s3://{bucket}/{key}: cannot download: {exc}",
            fix="check the uri, AWS_ENDPOINT_URL and that the store is up",
        ) from exc


def _fetch(store: ObjectStore, bucket: str, key: str, dest: Path) -> None:
    from vlmr1_core.checkpoint_store import download_checkpoint
    from vlmr1_core.checkpoints import MANIFEST

    objects = store.list_objects(key)
    if any(o.key == f"{key}/{MANIFEST}" for o in objects):
        download_checkpoint(store, key, dest)
        return
    if not objects:
        dest.parent.mkdir(parents=True, exist_ok=True)
        store.get_file(key, dest)
        return
    if re.match(r"^checkpoint-\d+$", key.rsplit("/", 1)[-1]):
        raise StorageError(
            f"s3://{bucket}/{key} is an incomplete checkpoint: it has no {MANIFEST} (an upload in progress or "
            "interrupted)",
            fix="name a complete checkpoint (`vlmr1 checkpoints list` shows them)",
        )
    for obj in objects:
        relative = obj.key[len(key) + 1 :]
        if not relative or relative.endswith("/"):
            continue
        if ".." in relative.split("/"):
            raise StorageError(f"s3://{bucket}/{obj.key}: refusing an object name with '..'")
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        store.get_file(obj.key, target)
