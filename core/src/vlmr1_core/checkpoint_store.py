"""Checkpoints in object storage: the folder layout and manifest of :mod:`vlmr1_core.checkpoints`.

``s3://bucket/run/checkpoints/checkpoint-<step>/`` holds the same files as the local folder,
``manifest.json`` included. Object stores have no rename, so completeness is carried by the
order of the writes instead: every file first, the manifest last
(:func:`upload_checkpoint`). A reader that finds no manifest under a checkpoint prefix is
looking at an upload in progress or one that was interrupted: listing, resuming, pruning's
"best" and downloads all treat it as absent, and the next prune of the run deletes it.

Reading is the mirror image: the manifest first, then exactly the files it lists, then every
file hashed (:func:`download_checkpoint`), so a download is complete and verified or fails.
Listing checks names and sizes against each manifest without downloading; the sha256 check
needs the bytes (``vlmr1 checkpoints verify`` downloads them).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from vlmr1_core.checkpoints import (
    MANIFEST,
    VerifyResult,
    kept_by_pruning,
    parse_manifest,
    sha256_file,
    step_of,
    verify_checkpoint,
)
from vlmr1_core.objectstore import ObjectStore, StoredObject
from vlmr1_core.uri import StorageError, parse_uri

__all__ = [
    "RemoteCheckpoint",
    "RemoteListing",
    "download_checkpoint",
    "list_remote",
    "prune_remote",
    "restore_folder",
    "split_s3",
    "sync_folder",
    "upload_checkpoint",
    "verify_remote",
]


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b/`` -> ``("bucket", "a/b")`` (a StorageError for anything else)."""
    parsed = parse_uri(uri)
    if parsed.scheme != "s3":
        raise StorageError(f"{uri!r} is not an s3:// uri")
    return parsed.authority, parsed.path


@dataclass
class RemoteCheckpoint:
    """A checkpoint prefix with a manifest, checked against the bucket's listing."""

    key: str
    """``run/checkpoints/checkpoint-4`` (no bucket, no trailing slash)."""
    uri: str
    result: VerifyResult
    """The manifest's step, digest and metrics; missing files, size mismatches (as changed) and
    extra objects found by listing (no hashing)."""
    files: dict[str, Any] = field(default_factory=dict)

    @property
    def step(self) -> int | None:
        return self.result.step


@dataclass
class RemoteListing:
    """Every checkpoint below a prefix: those with a manifest (newest first), and the incomplete."""

    checkpoints: list[RemoteCheckpoint]
    incomplete: list[str]
    """Keys of checkpoint prefixes without a manifest (an upload in progress or interrupted)."""

    def complete(self) -> list[RemoteCheckpoint]:
        """The checkpoints whose listing matches their manifest, newest first."""
        return [c for c in self.checkpoints if c.result.ok]


def upload_checkpoint(store: ObjectStore, local: Path, key: str) -> None:
    """Upload the complete local checkpoint folder ``local`` to ``key``: files, then the manifest.

    A prefix that already holds this step (a re-save after resuming from an older checkpoint)
    loses its manifest first, so for the whole upload it reads as incomplete, never as the old
    manifest over new files; objects the new manifest does not list are deleted before the
    manifest is written.
    """
    data = (local / MANIFEST).read_bytes()
    probe = VerifyResult(path=local)
    manifest = parse_manifest(data, probe)
    if manifest is None:
        raise StorageError(f"{local} is not a complete checkpoint: {'; '.join(probe.problems())}")
    manifest_key = f"{key}/{MANIFEST}"
    existing = {o.key for o in store.list_objects(key)}
    if manifest_key in existing:
        store.delete([manifest_key])
    wanted = {f"{key}/{name}" for name in manifest["files"]}
    for name in sorted(manifest["files"]):
        store.put_file(local / name, f"{key}/{name}")
    stale = sorted(existing - wanted - {manifest_key})
    if stale:
        store.delete(stale)
    store.put_file(local / MANIFEST, manifest_key)


def list_remote(store: ObjectStore, prefix: str) -> RemoteListing:
    """The checkpoints below ``prefix`` (``run/checkpoints``), from one listing plus one read per manifest."""
    groups: dict[str, list[StoredObject]] = {}
    start = f"{prefix}/" if prefix else ""
    for obj in store.list_objects(prefix):
        name, _, _ = obj.key[len(start) :].partition("/")
        if step_of(name) is not None:
            groups.setdefault(name, []).append(obj)
    checkpoints, incomplete = [], []
    for name in sorted(groups, key=lambda n: step_of(n) or 0, reverse=True):
        key = f"{start}{name}"
        objects = {o.key[len(key) + 1 :]: o.size for o in groups[name]}
        if MANIFEST not in objects:
            incomplete.append(key)
            continue
        result = VerifyResult(path=Path(name))
        data = store.get_bytes(f"{key}/{MANIFEST}")
        manifest = parse_manifest(data, result) if data is not None else None
        if data is None:  # deleted between the listing and the read (a concurrent prune)
            incomplete.append(key)
            continue
        files: dict[str, Any] = manifest["files"] if manifest is not None else {}
        if manifest is not None:
            if result.step != step_of(name):
                result.errors.append(f"prefix {name} holds the manifest of step {result.step}")
            for file_name, entry in sorted(files.items()):
                if file_name not in objects:
                    result.missing.append(file_name)
                elif isinstance(entry, dict) and entry.get("size") != objects[file_name]:
                    result.changed.append(file_name)
            result.extra = sorted(set(objects) - set(files) - {MANIFEST})
        checkpoints.append(RemoteCheckpoint(key, f"s3://{store.bucket}/{key}", result, dict(files)))
    return RemoteListing(checkpoints, incomplete)


def download_checkpoint(store: ObjectStore, key: str, dest: Path) -> VerifyResult:
    """Download the checkpoint at ``key`` into the folder ``dest`` (replaced) and verify it.

    The manifest is read first and only the files it lists are fetched, into a temporary
    sibling renamed into place once every file hashes as the manifest says. A prefix without
    a manifest, or files that do not verify, are a StorageError and leave ``dest`` as it was.
    """
    uri = f"s3://{store.bucket}/{key}"
    data = store.get_bytes(f"{key}/{MANIFEST}")
    if data is None:
        raise StorageError(
            f"{uri} is not a complete checkpoint: it has no {MANIFEST} (an upload in progress or interrupted)",
            fix="name a checkpoint that `vlmr1 checkpoints list` shows",
        )
    result = VerifyResult(path=dest)
    manifest = parse_manifest(data, result)
    if manifest is None:
        raise StorageError(f"{uri}: {'; '.join(result.problems())}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        ready = staging / dest.name
        for name in sorted(manifest["files"]):
            target = ready / PurePosixPath(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            store.get_file(f"{key}/{name}", target)
        ready.mkdir(exist_ok=True)
        (ready / MANIFEST).write_bytes(data)
        verified = verify_checkpoint(ready)
        if not verified.ok:
            raise StorageError(f"{uri} does not verify against its manifest: {'; '.join(verified.problems())}")
        if dest.exists():
            aside = staging / "old"
            dest.rename(aside)
        ready.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    verified.path = dest
    return verified


def verify_remote(store: ObjectStore, key: str, scratch: Path) -> VerifyResult:
    """Check the checkpoint at ``key`` file by file: the listing against its manifest (missing,
    extra, resized), then the sha256 of every file present, downloaded into ``scratch``."""
    parent, _, name = key.rpartition("/")
    match = next((c for c in list_remote(store, parent).checkpoints if c.key == key), None)
    if match is None:
        result = VerifyResult(path=Path(name))
        result.errors.append(f"no {MANIFEST} (not a checkpoint, or an upload in progress or interrupted)")
        return result
    result = match.result
    for file_name, entry in sorted(match.files.items()):
        if file_name in result.missing or file_name in result.changed:
            continue
        target = scratch / PurePosixPath(file_name)
        target.parent.mkdir(parents=True, exist_ok=True)
        store.get_file(f"{key}/{file_name}", target)
        if not isinstance(entry, dict) or entry.get("sha256") != sha256_file(target):
            result.changed.append(file_name)
        target.unlink()
    result.changed.sort()
    return result


def prune_remote(
    store: ObjectStore,
    prefix: str,
    keep: int,
    best_metric: str | None = "reward",
    *,
    greater_is_better: bool = True,
    protect: Sequence[int] = (),
) -> list[str]:
    """Delete all but the newest ``keep`` complete checkpoints below ``prefix``, never the best by
    ``best_metric`` nor a step in ``protect``, and every incomplete prefix (leftovers of
    interrupted uploads: call this only when no upload to ``prefix`` is under way). A
    checkpoint prefix loses its manifest first, so a reader never sees a half-deleted checkpoint
    as complete. Returns the deleted checkpoint keys."""
    listing = list_remote(store, prefix)
    complete = [c for c in listing.checkpoints if c.step is not None and c.result.digest is not None]
    kept = kept_by_pruning(
        [(c.step or 0, c.result.metrics) for c in complete], keep, best_metric, greater_is_better=greater_is_better
    ) | set(protect)
    removed = []
    for checkpoint in complete:
        if checkpoint.step not in kept:
            store.delete([f"{checkpoint.key}/{MANIFEST}"])
            store.delete_prefix(checkpoint.key)
            removed.append(checkpoint.key)
    for key in listing.incomplete:
        store.delete_prefix(key)
    return removed


def sync_folder(store: ObjectStore, local: Path, key: str) -> int:
    """Upload the files of ``local`` whose size differs from (or is absent in) ``key``; returns how
    many. For append-only run files (TensorBoard event files, metrics.jsonl), size is change."""
    if not local.is_dir():
        return 0
    remote = {o.key: o.size for o in store.list_objects(key)}
    sent = 0
    for path in sorted(local.rglob("*")):
        if not path.is_file():
            continue
        target = f"{key}/{path.relative_to(local).as_posix()}"
        if remote.get(target) != path.stat().st_size:
            store.put_file(path, target)
            sent += 1
    return sent


def restore_folder(store: ObjectStore, key: str, local: Path) -> int:
    """Download the objects below ``key`` that ``local`` lacks; returns how many."""
    count = 0
    for obj in store.list_objects(key):
        relative = obj.key[len(key) + 1 :]
        if not relative or ".." in relative.split("/"):
            continue
        target = local / PurePosixPath(relative)
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        store.get_file(obj.key, target)
        count += 1
    return count
