"""GRPO training with ``checkpoint.uri: s3://bucket/run`` against a real S3 API server.

One run is cut off in the middle of uploading its third checkpoint; a new "pod" (an empty run
folder) resumes from the newest complete checkpoint in the bucket and finishes. On the way:
manifests last, status only after upload, pruning that keeps the best, the CLI on s3://.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vlmr1_core.checkpoint_store import list_remote
from vlmr1_core.checkpoints import MANIFEST, best_index, save_checkpoint, verify_checkpoint
from vlmr1_core.config import TrainerConfig
from vlmr1_core.errors import UserError
from vlmr1_core.objectstore import ObjectStoreUnavailableError, S3Store
from vlmr1_trainer.mirror import CheckpointMirror
from vlmr1_trainer.rewards import Reward, available, register
from vlmr1_trainer.worker import run_training

REPO = Path(__file__).resolve().parents[2]
SHAPES = REPO / "examples" / "data" / "rec-shapes"

if "test_s3_variety" not in available():

    @register("test_s3_variety")
    class Variety(Reward):
        """Distinct characters / 32: differs between checkpoints, so "best" is not always "newest"."""

        columns = ()

        def score(self, completion: str, sample: object) -> float | None:
            return min(len(set(completion)) / 32, 1.0)


def s3_config(bucket: str, max_steps: int) -> TrainerConfig:
    return TrainerConfig.model_validate(
        {
            "model": {"uri": "builtin://tiny-qwen2.5-vl"},
            "task": "rec",
            "datasets": [{"jsonl": str(SHAPES / "train.jsonl"), "imageRoot": str(SHAPES / "images")}],
            "rewards": [{"name": "test_s3_variety"}, {"name": "rec_iou"}],
            "grpo": {"numGenerations": 2, "maxCompletionLength": 8},
            "training": {"maxSteps": max_steps, "perDeviceBatchSize": 2, "saveSteps": 1, "precision": "fp32"},
            "checkpoint": {"uri": f"s3://{bucket}/run", "keep": 1},
        }
    )


def train(cfg: TrainerConfig, output: Path) -> object:
    return run_training(cfg, output=output, accelerator="cpu", world_size=1)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vlmr1_cli", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_s3_run_interrupted_mid_upload_resumes_from_the_bucket(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = S3Store(bucket)
    real_put = S3Store.put_file
    sent: list[str] = []

    def dies_in_checkpoint_3(self: S3Store, path: Path, key: str) -> None:
        if "/checkpoint-3/" in key and any("/checkpoint-3/" in k for k in sent):
            raise ObjectStoreUnavailableError("injected: the pod died during the upload")
        sent.append(key)
        real_put(self, path, key)

    monkeypatch.setattr(S3Store, "put_file", dies_in_checkpoint_3)
    first = tmp_path / "pod-1"
    with pytest.raises(ObjectStoreUnavailableError, match="injected"):
        train(s3_config(bucket, max_steps=4), first)
    monkeypatch.setattr(S3Store, "put_file", real_put)

    # Checkpoints 1 and 2 went up whole, the manifest after every file; 3 has one file and no manifest.
    uploads = [k for k in sent if "/checkpoint-2/" in k]
    assert uploads[-1] == f"run/checkpoints/checkpoint-2/{MANIFEST}" and len(uploads) > 3
    assert [o.key for o in store.list_objects("run/checkpoints/checkpoint-3")] == [
        k for k in sent if "/checkpoint-3/" in k
    ]
    listing = list_remote(store, "run/checkpoints")
    assert listing.incomplete == ["run/checkpoints/checkpoint-3"]
    complete = {c.step: c.result.digest for c in listing.complete()}
    # Status is fed from metrics.jsonl: checkpoint 3, saved locally but never uploaded, is not in it.
    events = [json.loads(line) for line in (first / "metrics.jsonl").read_text().splitlines()]
    reported = [e for e in events if e["event"] == "checkpoint"]
    assert [e["step"] for e in reported] == [1, 2]
    # keep 1: the newest and the best by reward (which of 1 and 2 that is, the run decided).
    best = reported[best_index([(e["step"], e["metrics"]) for e in reported], "reward") or 0]["step"]
    assert complete == {e["step"]: e["digest"] for e in reported if e["step"] in (2, best)}
    assert reported[-1]["uri"] == f"s3://{bucket}/run/checkpoints/checkpoint-2"
    assert verify_checkpoint(first / "checkpoints" / "checkpoint-3").ok  # the local save was complete

    listed = cli("checkpoints", "list", f"s3://{bucket}/run/checkpoints")
    assert listed.returncode == 0, listed.stderr
    assert "checkpoint-3: no manifest yet" in listed.stderr
    assert next(line.split("\t")[:3] for line in listed.stdout.splitlines()) == [
        "checkpoint-2",
        "step=2",
        "complete",
    ]

    # A new pod: an empty run folder. It resumes from checkpoint 2 in the bucket, never from 3.
    second = tmp_path / "pod-2"
    result = train(s3_config(bucket, max_steps=4), second)
    assert result.resumed_from is not None and result.resumed_from.step == 2  # type: ignore[attr-defined]
    assert result.steps == 4  # type: ignore[attr-defined]
    restored = [json.loads(line) for line in (second / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in restored if e["event"] == "progress"][:2] == [1, 2], "the curve before the restart"
    listing = list_remote(store, "run/checkpoints")
    assert listing.incomplete == []
    rewards = {c.step: c.result.metrics for c in listing.complete()}
    everything = sorted(
        [(s, json.loads((d / MANIFEST).read_text())["metrics"]) for s, d in _local_checkpoints(first, second)],
        reverse=True,
    )
    best = everything[best_index(everything, "reward") or 0][0]
    assert set(rewards) == {4, best}, "the newest and the best survive pruning"
    assert (store.get_bytes("run/metrics.jsonl") or b"").count(b'"event": "checkpoint"') >= 2

    digest = verify_checkpoint(second / "checkpoints" / "checkpoint-4").digest
    verified = cli("checkpoints", "verify", f"s3://{bucket}/run/checkpoints/checkpoint-4")
    assert (verified.returncode, verified.stdout.strip()) == (0, digest), verified.stderr


def _local_checkpoints(*runs: Path) -> list[tuple[int, Path]]:
    found: dict[int, Path] = {}
    for run in runs:
        for folder in sorted((run / "checkpoints").glob("checkpoint-*")):
            if (folder / MANIFEST).is_file():
                found[int(folder.name.rpartition("-")[2])] = folder
    return sorted(found.items())


def test_a_surviving_run_folder_uploads_its_newer_checkpoint_again(bucket: str, tmp_path: Path) -> None:
    cfg = s3_config(bucket, max_steps=4)
    output = tmp_path / "run"
    mirror = CheckpointMirror(f"s3://{bucket}/run", output, cfg)
    for step in (1, 2):
        info = save_checkpoint(output / "checkpoints", step, lambda d: (d / "w.bin").write_bytes(b"w"), {"reward": 0.1})
        if step == 1:
            mirror.publish(info)
    (output / "tensorboard").mkdir()
    (output / "tensorboard" / "events.out.tfevents.1").write_bytes(b"event")
    mirror.restore(resume=True, rank=0)
    assert [c.step for c in list_remote(mirror.store, "run/checkpoints").complete()] == [2, 1]
    mirror.publish(save_checkpoint(output / "checkpoints", 3, lambda d: (d / "w.bin").write_bytes(b"3"), {}))
    assert mirror.store.get_bytes("run/tensorboard/events.out.tfevents.1") == b"event"


def test_missing_credentials_stop_the_run_before_the_first_step(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(UserError) as info:
        train(s3_config(bucket, max_steps=1), tmp_path / "run")
    assert info.value.field == "spec.checkpoint.uri"
    assert f"no credentials for s3://{bucket}/run" in str(info.value)
    assert not (tmp_path / "run" / "metrics.jsonl").exists(), "nothing trained"
    config_file = tmp_path / "config.yaml"
    config_file.write_text(json.dumps(s3_config(bucket, max_steps=1).to_yaml_dict()))
    proc = subprocess.run(
        [sys.executable, "-m", "vlmr1_trainer", "--config", str(config_file), "--output", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "spec.checkpoint.uri: no credentials for" in proc.stderr and "Traceback" not in proc.stderr
