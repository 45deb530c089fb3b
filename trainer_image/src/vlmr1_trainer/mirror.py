"""A run whose ``checkpoint.uri`` is ``s3://bucket/prefix``: local staging, uploaded checkpoints.

The trainer writes exactly as for a local run, into its run folder (``vlmr1 run --output``, in a
pod ``$VLMR1_OUTPUT_DIR``, else ``/var/lib/vlmr1/output`` on the pod's scratch volume):
atomic checkpoint folders with their manifests. :class:`CheckpointMirror` adds, on rank 0:

* after each complete local checkpoint, and before it is reported (metrics.jsonl, the
  GRPOJob status), its upload to ``<uri>/checkpoints/checkpoint-<step>/``: files first, the
  manifest last (:func:`vlmr1_core.checkpoint_store.upload_checkpoint`); then the bucket is
  pruned like the folder (``checkpoint.keep``, never the best, leftovers of interrupted uploads
  removed), and the run files next to the checkpoints are synced: ``tensorboard/`` and
  ``metrics.jsonl``;
* before training (:meth:`CheckpointMirror.restore`, every process; one per node downloads):
  a local checkpoint newer than any complete one in the bucket (an upload that was cut off
  while the run folder survived) is uploaded again; a complete checkpoint in the bucket newer
  than any local one (a new pod) is downloaded and verified, with the run files, so the
  trainer resumes from it as from a local one. An incomplete upload is never resumed from.

An upload that fails ends the run: a user error (credentials, policy, bucket) exits 2; a
store that stays unavailable through botocore's retries is an ordinary failure, so the gang
restarts and resumes from the newest complete checkpoint.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator
from pathlib import Path

from vlmr1_core.checkpoint_store import (
    download_checkpoint,
    list_remote,
    prune_remote,
    restore_folder,
    split_s3,
    sync_folder,
    upload_checkpoint,
)
from vlmr1_core.checkpoints import CHECKPOINTS, CheckpointInfo, checkpoint_name, find_resumable
from vlmr1_core.config import TrainerConfig
from vlmr1_core.objectstore import ObjectStore, S3Store

__all__ = ["RUN_FILES", "CheckpointMirror"]

log = logging.getLogger(__name__)

RUN_FILES = ("tensorboard", "metrics.jsonl")
"""Run-folder entries uploaded next to the checkpoints and restored with them."""
_LOCK = ".vlmr1-restore.lock"


class CheckpointMirror:
    """Keeps ``<checkpoint.uri>/checkpoints`` in the bucket in step with the run folder's."""

    def __init__(self, uri: str, output: Path, config: TrainerConfig, store: ObjectStore | None = None) -> None:
        bucket, prefix = split_s3(uri)
        self.uri, self.output, self.config = uri, output, config
        self.prefix = prefix
        self.store: ObjectStore = store if store is not None else S3Store(bucket)

    @classmethod
    def for_config(cls, config: TrainerConfig, output: Path) -> CheckpointMirror | None:
        """The mirror of an ``s3://`` checkpoint.uri, else None."""
        uri = config.checkpoint.uri
        return cls(uri, output, config) if uri and uri.startswith("s3://") else None

    def key(self, step: int) -> str:
        return f"{self.prefix}/{CHECKPOINTS}/{checkpoint_name(step)}"

    def restore(self, *, resume: bool, rank: int) -> None:
        """Before training: re-upload a newer local checkpoint (rank 0), download a newer remote one."""
        if not resume:
            return
        with self._node_lock():
            local = find_resumable(self.output / CHECKPOINTS)
            listing = list_remote(self.store, f"{self.prefix}/{CHECKPOINTS}")
            remote = next(iter(listing.complete()), None)
            local_step = local.step if local is not None else -1
            remote_step = remote.step if remote is not None and remote.step is not None else -1
            if local is not None and local_step > remote_step and rank == 0:
                log.info("uploading checkpoint %d again: the bucket's newest complete one is older", local_step)
                upload_checkpoint(self.store, local.path, self.key(local_step))
            elif remote is not None and remote_step > local_step:
                log.info("downloading checkpoint %d from %s to resume from it", remote_step, remote.uri)
                download_checkpoint(self.store, remote.key, self.output / CHECKPOINTS / checkpoint_name(remote_step))
                self._restore_run_files()

    def publish(self, info: CheckpointInfo) -> None:
        """After a local save (rank 0): upload, prune the bucket, sync the run files."""
        upload_checkpoint(self.store, info.path, self.key(info.step))
        keep = self.config.checkpoint.keep
        if keep:
            prune_remote(
                self.store,
                f"{self.prefix}/{CHECKPOINTS}",
                keep,
                self.config.checkpoint.best_metric,
                greater_is_better=self.config.checkpoint.greater_is_better,
                protect=[info.step],
            )
        self._sync_run_files()

    def _sync_run_files(self) -> None:
        board = self.output / RUN_FILES[0]
        sync_folder(self.store, board, f"{self.prefix}/{RUN_FILES[0]}")
        metrics = self.output / RUN_FILES[1]
        if metrics.is_file():
            self.store.put_file(metrics, f"{self.prefix}/{RUN_FILES[1]}")

    def _restore_run_files(self) -> None:
        restore_folder(self.store, f"{self.prefix}/{RUN_FILES[0]}", self.output / RUN_FILES[0])
        metrics = self.output / RUN_FILES[1]
        if not metrics.exists():
            data = self.store.get_bytes(f"{self.prefix}/{RUN_FILES[1]}")
            if data is not None:
                metrics.write_bytes(data)

    @contextlib.contextmanager
    def _node_lock(self) -> Iterator[None]:
        # The processes of one node share its run folder: one downloads, the others then find it local.
        self.output.mkdir(parents=True, exist_ok=True)
        with (self.output / _LOCK).open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
