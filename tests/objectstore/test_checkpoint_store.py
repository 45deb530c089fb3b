"""Checkpoints in a real S3 API server: upload order, listing, download, pruning, interruption."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlmr1_core.checkpoint_store import download_checkpoint, list_remote, prune_remote, upload_checkpoint
from vlmr1_core.checkpoints import MANIFEST, CheckpointInfo, save_checkpoint, verify_checkpoint
from vlmr1_core.objectstore import ObjectStoreUnavailableError, S3Store, require_credentials
from vlmr1_core.uri import StorageError, resolve_local_path


def _save(root: Path, step: int, reward: float, payload: bytes = b"w") -> CheckpointInfo:
    def write(tmp: Path) -> None:
        (tmp / "model.safetensors").write_bytes(payload * 1000 + str(step).encode())
        (tmp / "sub").mkdir()
        (tmp / "sub" / "state.json").write_text(f'{{"step": {step}}}')

    return save_checkpoint(root, step, write, {"reward": reward})


class FailingStore(S3Store):
    """The real store, with the process 'dying' (an exception) after ``puts`` uploads."""

    def __init__(self, bucket: str, puts: int) -> None:
        super().__init__(bucket)
        self.puts_left = puts

    def put_file(self, path: Path, key: str) -> None:
        if self.puts_left == 0:
            raise ObjectStoreUnavailableError(f"injected failure before {key}")
        self.puts_left -= 1
        super().put_file(path, key)


def test_upload_puts_the_manifest_last_and_lists_complete(bucket: str, tmp_path: Path) -> None:
    store = S3Store(bucket)
    info = _save(tmp_path, 2, 0.5)
    upload_checkpoint(store, info.path, "run/checkpoints/checkpoint-2")
    keys = [o.key for o in store.list_objects("run/checkpoints/checkpoint-2")]
    assert sorted(keys) == [
        "run/checkpoints/checkpoint-2/manifest.json",
        "run/checkpoints/checkpoint-2/model.safetensors",
        "run/checkpoints/checkpoint-2/sub/state.json",
    ]
    listing = list_remote(store, "run/checkpoints")
    assert [(c.step, c.result.digest, c.result.ok) for c in listing.checkpoints] == [(2, info.digest, True)]
    assert listing.checkpoints[0].uri == f"s3://{bucket}/run/checkpoints/checkpoint-2"


def test_an_interrupted_upload_leaves_no_manifest_and_is_ignored(bucket: str, tmp_path: Path) -> None:
    first, second = _save(tmp_path, 2, 0.5), _save(tmp_path, 4, 0.6)
    upload_checkpoint(S3Store(bucket), first.path, "run/checkpoints/checkpoint-2")
    with pytest.raises(ObjectStoreUnavailableError, match="injected"):
        upload_checkpoint(FailingStore(bucket, puts=1), second.path, "run/checkpoints/checkpoint-4")
    store = S3Store(bucket)
    present = [o.key for o in store.list_objects("run/checkpoints/checkpoint-4")]
    assert present == ["run/checkpoints/checkpoint-4/model.safetensors"]  # one file, no manifest
    listing = list_remote(store, "run/checkpoints")
    assert [c.step for c in listing.complete()] == [2]
    assert listing.incomplete == ["run/checkpoints/checkpoint-4"]
    with pytest.raises(StorageError, match="incomplete checkpoint"):
        resolve_local_path(f"s3://{bucket}/run/checkpoints/checkpoint-4")
    # The next prune (after the next complete upload) clears the leftover.
    prune_remote(store, "run/checkpoints", keep=5)
    assert store.list_objects("run/checkpoints/checkpoint-4") == []


def test_a_resave_of_a_step_never_shows_the_old_manifest_over_new_files(bucket: str, tmp_path: Path) -> None:
    store = S3Store(bucket)
    old = _save(tmp_path / "a", 4, 0.1, payload=b"old")
    upload_checkpoint(store, old.path, "run/checkpoints/checkpoint-4")
    (old.path / "sub" / "state.json").unlink()  # the new save has different files
    new_dir = tmp_path / "b"
    new = save_checkpoint(new_dir, 4, lambda d: (d / "model.safetensors").write_bytes(b"new"), {"reward": 0.2})
    with pytest.raises(ObjectStoreUnavailableError):
        upload_checkpoint(FailingStore(bucket, puts=0), new.path, "run/checkpoints/checkpoint-4")
    assert list_remote(store, "run/checkpoints").complete() == []  # old manifest gone first
    upload_checkpoint(store, new.path, "run/checkpoints/checkpoint-4")
    (checkpoint,) = list_remote(store, "run/checkpoints").checkpoints
    assert checkpoint.result.ok and checkpoint.result.digest == new.digest  # the stale sub/state.json is gone


def test_listing_reports_missing_resized_and_extra_objects(bucket: str, tmp_path: Path) -> None:
    store = S3Store(bucket)
    info = _save(tmp_path, 6, 0.5)
    upload_checkpoint(store, info.path, "r/checkpoint-6")
    store.delete(["r/checkpoint-6/sub/state.json"])
    (tmp_path / "x").write_bytes(b"tampered")
    store.put_file(tmp_path / "x", "r/checkpoint-6/model.safetensors")
    store.put_file(tmp_path / "x", "r/checkpoint-6/extra.bin")
    (checkpoint,) = list_remote(store, "r").checkpoints
    assert checkpoint.result.problems() == [
        "missing: sub/state.json",
        "changed: model.safetensors",
        "extra: extra.bin",
    ]


def test_download_fetches_the_manifests_files_and_verifies_them(bucket: str, tmp_path: Path) -> None:
    store = S3Store(bucket)
    info = _save(tmp_path / "run", 3, 0.5)
    upload_checkpoint(store, info.path, "r/checkpoint-3")
    (tmp_path / "stray").write_bytes(b"not in the manifest")
    store.put_file(tmp_path / "stray", "r/checkpoint-3/stray.bin")
    result = download_checkpoint(store, "r/checkpoint-3", tmp_path / "got" / "checkpoint-3")
    assert result.ok and result.digest == info.digest
    assert not (tmp_path / "got" / "checkpoint-3" / "stray.bin").exists()
    # Same bytes, different content: the hash check refuses it and leaves nothing behind.
    (tmp_path / "evil").write_bytes(b"x" * (info.path / "model.safetensors").stat().st_size)
    store.put_file(tmp_path / "evil", "r/checkpoint-3/model.safetensors")
    with pytest.raises(StorageError, match=r"changed: model.safetensors"):
        download_checkpoint(store, "r/checkpoint-3", tmp_path / "bad" / "checkpoint-3")
    assert list((tmp_path / "bad").iterdir()) == []


def test_uri_download_refreshes_a_rewritten_checkpoint(bucket: str, tmp_path: Path) -> None:
    store = S3Store(bucket)
    first = _save(tmp_path / "a", 5, 0.1, payload=b"a")
    upload_checkpoint(store, first.path, "r/checkpoint-5")
    path = resolve_local_path(f"s3://{bucket}/r/checkpoint-5")
    assert verify_checkpoint(path).digest == first.digest
    second = _save(tmp_path / "b", 5, 0.2, payload=b"b")
    upload_checkpoint(store, second.path, "r/checkpoint-5")
    assert verify_checkpoint(resolve_local_path(f"s3://{bucket}/r/checkpoint-5")).digest == second.digest


def test_prune_keeps_the_newest_and_the_best(bucket: str, tmp_path: Path) -> None:
    store = S3Store(bucket)
    for step, reward in [(1, 0.2), (2, 0.9), (3, 0.1), (4, 0.3), (5, 0.4)]:
        upload_checkpoint(store, _save(tmp_path, step, reward).path, f"r/checkpoint-{step}")
    removed = prune_remote(store, "r", keep=2)
    assert removed == ["r/checkpoint-3", "r/checkpoint-1"]
    assert [c.step for c in list_remote(store, "r").complete()] == [5, 4, 2]
    assert store.list_prefixes("r") == ["checkpoint-2", "checkpoint-4", "checkpoint-5"]


def test_plain_objects_and_prefixes_still_download(bucket: str, tmp_path: Path) -> None:
    store = S3Store(bucket)
    (tmp_path / "a.jsonl").write_text("{}\n")
    store.put_file(tmp_path / "a.jsonl", "data/train/a.jsonl")
    store.put_file(tmp_path / "a.jsonl", "data/images/x/1.png")
    assert resolve_local_path(f"s3://{bucket}/data/train/a.jsonl").read_text() == "{}\n"
    assert (resolve_local_path(f"s3://{bucket}/data/images") / "x" / "1.png").is_file()
    with pytest.raises(StorageError, match=r"404|NoSuchKey|Not Found"):
        resolve_local_path(f"s3://{bucket}/data/absent.jsonl")


def test_missing_credentials_and_a_wrong_bucket_are_user_errors(
    s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StorageError, match=r"no credentials for s3://b1/run.*AWS_ACCESS_KEY_ID"):
        require_credentials("s3://b1/run")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    with pytest.raises(StorageError, match="NoSuchBucket"):
        S3Store("vlmr1-no-such-bucket").list_objects("run")
    assert MANIFEST == "manifest.json"
