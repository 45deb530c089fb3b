"""Fetch the pinned checkpoint and verify it before anything is served.

Every uri form ends at a local folder that must be a vlmr1 checkpoint (a
``manifest.json`` with the sha256 of every file, :mod:`vlmr1_core.checkpoints`):

* a path, or ``pvc://claim/path`` (the claim mounted under ``$VLMR1_PVC_ROOT``): used in place;
* ``s3://bucket/prefix``: downloaded into ``$VLMR1_CACHE_DIR/s3`` (pluggable downloader; by
  default boto3 with the pod's AWS_* variables): the manifest first, then exactly the files it
  lists; a prefix without a manifest (an upload in progress or interrupted) is refused, and a
  cached copy is fetched again when the bucket's manifest changed;
* ``hf://org/name`` or ``hf://org/name@revision``: a checkpoint pushed to a hub repository
  *with its manifest.json* (the repository root is the checkpoint folder). There is no
  other way to pin hub weights to a vlmr1 digest, so a hub repository without a manifest
  is refused like any other folder without one. ``manifest.json`` is fetched first and its
  digest compared with the spec's, so a wrong repository or revision fails before any
  weights are downloaded; then exactly the files the manifest lists are fetched into
  ``$VLMR1_CACHE_DIR/hf/<digest>`` (content-addressed: a restart reuses them).

Then :func:`vlmr1_core.checkpoints.verify_checkpoint` hashes every file (missing,
changed and extra files are problems) and the manifest digest must equal the spec's
``model.digest``. Any failure raises :class:`FetchError`, whose message names the uri,
the path and each problem; the caller exits before the engine starts.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vlmr1_core.checkpoints import MANIFEST, verify_checkpoint
from vlmr1_core.uri import Downloader, StorageError, cache_dir, resolve_local_path

__all__ = [
    "FetchError",
    "Fetched",
    "HubDownloader",
    "fetch_checkpoint",
    "hub_download",
    "parse_hf_uri",
    "planned_path",
]

log = logging.getLogger(__name__)

HubDownloader = Callable[[str, str | None, list[str], Path], None]
"""``(repo_id, revision, filenames, destination)``: write each named file of the hub
repository under the folder ``destination``, keeping its relative path."""

_HF = re.compile(r"^hf://(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<rev>[\w./-]+))?/?$")


class FetchError(RuntimeError):
    """The checkpoint cannot be fetched, or does not verify against the pinned digest."""


@dataclass(frozen=True)
class Fetched:
    """A verified checkpoint on local disk."""

    path: Path
    digest: str
    step: int | None


def parse_hf_uri(uri: str) -> tuple[str, str | None]:
    """``hf://org/name[@revision]`` -> (repo id, revision or None)."""
    match = _HF.match(uri)
    if match is None:
        raise FetchError(f"{uri!r}: expected hf://<org>/<name> or hf://<org>/<name>@<revision>")
    return match.group("repo"), match.group("rev")


def hub_download(repo_id: str, revision: str | None, filenames: list[str], dest: Path) -> None:
    """Default :data:`HubDownloader`: huggingface_hub (installed with transformers; token from HF_TOKEN)."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise FetchError("hf:// checkpoints need huggingface_hub: pip install huggingface_hub") from exc
    for name in filenames:
        hf_hub_download(repo_id, name, revision=revision, local_dir=dest)


def _manifest_files(manifest_path: Path) -> list[str]:
    try:
        manifest = json.loads(manifest_path.read_bytes())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FetchError(f"{manifest_path}: not a vlmr1 checkpoint manifest ({exc})") from exc
    if not isinstance(files, dict) or not all(isinstance(k, str) for k in files):
        raise FetchError(f"{manifest_path}: the manifest has no files table")
    for name in files:
        if name.startswith("/") or ".." in Path(name).parts:
            raise FetchError(f"{manifest_path}: refusing a file name outside the checkpoint: {name!r}")
    return sorted(files)


def _fetch_hf(uri: str, digest: str, downloader: HubDownloader, cache_root: Path) -> Path:
    from vlmr1_core.checkpoints import sha256_file

    repo_id, revision = parse_hf_uri(uri)
    final = cache_root / "hf" / digest.removeprefix("sha256:")
    if (final / MANIFEST).is_file():
        return final  # verified again by the caller, like every source
    final.parent.mkdir(parents=True, exist_ok=True)
    # Staging, then only the manifest's files are moved into place: the hub client leaves
    # its own metadata folder in local_dir, which verification would report as extra.
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        downloader(repo_id, revision, [MANIFEST], staging)
        manifest = staging / MANIFEST
        if not manifest.is_file():
            raise FetchError(
                f"{uri}: the repository has no {MANIFEST}; hf:// must name a vlmr1 checkpoint pushed with its "
                f"manifest (its digest is what model.digest pins)"
            )
        found = "sha256:" + sha256_file(manifest)
        if found != digest:
            raise FetchError(_mismatch(uri, digest, found, "the hub repository's manifest"))
        files = _manifest_files(manifest)
        downloader(repo_id, revision, files, staging)
        ready = staging / "checkpoint"
        ready.mkdir()
        for name in [MANIFEST, *files]:
            source = staging / name
            if source.is_file():  # a missing one is reported by verification
                target = ready / name
                target.parent.mkdir(parents=True, exist_ok=True)
                source.rename(target)
        if final.exists():
            shutil.rmtree(final)
        ready.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _mismatch(uri: str, expected: str, found: str | None, where: str) -> str:
    return (
        f"{uri}: digest mismatch: the spec pins model.digest {expected}, but {where} has {found}; this is not the "
        f"checkpoint that was reviewed (wrong uri, or the checkpoint was rewritten). Run `vlmr1 checkpoints verify` "
        f"on it and promote the digest it prints, or point model.uri at the pinned checkpoint"
    )


def planned_path(uri: str, digest: str, *, cache_root: Path | None = None) -> Path:
    """Where :func:`fetch_checkpoint` will put (or find) the checkpoint, without fetching anything."""
    root = cache_root or cache_dir()
    if uri.startswith("hf://"):
        parse_hf_uri(uri)
        return root / "hf" / digest.removeprefix("sha256:")
    if uri.startswith("s3://"):
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return root / "s3" / bucket / key.strip("/")
    return _local_path(uri, None, root)


def _local_path(uri: str, downloader: Downloader | None, cache_root: Path) -> Path:
    if uri.startswith("builtin://"):
        raise FetchError(f"{uri}: builtin models have no manifest; save one as a checkpoint and serve that")
    try:
        return resolve_local_path(uri, downloader=downloader, cache_root=cache_root)
    except StorageError as exc:
        raise FetchError(str(exc)) from exc


def fetch_checkpoint(
    uri: str,
    digest: str,
    *,
    downloader: Downloader | None = None,
    hub_downloader: HubDownloader | None = None,
    cache_root: Path | None = None,
) -> Fetched:
    """Resolve ``uri`` to a local folder and verify every file and the manifest digest."""
    root = cache_root or cache_dir()
    try:
        if uri.startswith("hf://"):
            path = _fetch_hf(uri, digest, hub_downloader or hub_download, root)
        else:
            path = _local_path(uri, downloader, root)
    except FetchError:
        raise
    except (OSError, StorageError) as exc:
        raise FetchError(f"{uri}: cannot fetch the checkpoint: {exc}") from exc
    log.info("verifying %s at %s against %s", uri, path, digest)
    result = verify_checkpoint(path)
    if not result.ok:
        problems = "\n".join(f"  {p}" for p in result.problems())
        raise FetchError(f"{uri}: the checkpoint at {path} does not verify against its manifest:\n{problems}")
    if result.digest != digest:
        raise FetchError(_mismatch(uri, digest, result.digest, f"the checkpoint at {path}"))
    return Fetched(path=path, digest=digest, step=result.step)
