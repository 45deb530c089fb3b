"""The readers of a checkpoint in s3:// — `vlmr1 eval`, serving's fetch, `vlmr1 promote` — on a real
checkpoint trained into a real S3 API server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vlmr1_cli.gitops.promote import Request, promote
from vlmr1_cli.gitops.select import parse_selection
from vlmr1_core.checkpoints import CheckpointInfo, save_checkpoint
from vlmr1_core.config import TrainerConfig
from vlmr1_core.objectstore import S3Store
from vlmr1_serving.fetch import FetchError, fetch_checkpoint
from vlmr1_trainer.worker import run_training

REPO = Path(__file__).resolve().parents[2]
SHAPES = REPO / "examples" / "data" / "rec-shapes"

SERVICE = """\
apiVersion: vlmr1.io/v1alpha1
kind: VLMService
metadata:
  name: rec-dev
  namespace: ml
spec:
  model:
    uri: s3://elsewhere/old/checkpoint-1   # pinned by vlmr1 promote
    digest: sha256:7bfeb668af2219300e9f1cb7c24bea23e9eed2022b5147aeb6bf775c95197b5c
    family: qwen2.5-vl
  engine:
    name: transformers
  resources:
    accelerator: cpu
    devicesPerReplica: 0
"""


def test_eval_and_serving_fetch_read_a_trained_s3_checkpoint(bucket: str, tmp_path: Path) -> None:
    cfg = TrainerConfig.model_validate(
        {
            "model": {"uri": "builtin://tiny-qwen2.5-vl"},
            "task": "rec",
            "datasets": [{"jsonl": str(SHAPES / "train.jsonl"), "imageRoot": str(SHAPES / "images")}],
            "grpo": {"numGenerations": 2, "maxCompletionLength": 8},
            "training": {"maxSteps": 1, "perDeviceBatchSize": 2, "saveSteps": 1, "precision": "fp32"},
            "checkpoint": {"uri": f"s3://{bucket}/rec"},
        }
    )
    result = run_training(cfg, output=tmp_path / "staging", accelerator="cpu", world_size=1)
    (info,) = result.checkpoints
    uri = f"s3://{bucket}/rec/checkpoints/checkpoint-1"
    assert info.uri == uri

    proc = subprocess.run(
        [sys.executable, "-m", "vlmr1_cli", "eval", "--checkpoint", uri, "--data", f"{SHAPES / 'val.jsonl'}:"
         f"{SHAPES / 'images'}", "--task", "rec", "--name", "val", "--max-samples", "2", "--output",
         str(tmp_path / "eval"), "--no-progress"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert record["digest"] == info.digest and record["step"] == 1

    fetched = fetch_checkpoint(uri, info.digest, cache_root=tmp_path / "serving-cache")
    assert fetched.digest == info.digest and (fetched.path / "manifest.json").is_file()
    assert str(fetched.path).startswith(str(tmp_path / "serving-cache" / "s3" / bucket))
    # A weight file rewritten in the bucket (same size, other bytes): serving refuses to start.
    weights = next(p for p in fetched.path.iterdir() if p.suffix == ".safetensors")
    tampered = tmp_path / "tampered"
    tampered.write_bytes(bytes(b ^ 0xFF for b in weights.read_bytes()))
    S3Store(bucket).put_file(tampered, f"rec/checkpoints/checkpoint-1/{weights.name}")
    with pytest.raises(FetchError, match=f"changed: {weights.name}"):
        fetch_checkpoint(uri, info.digest, cache_root=tmp_path / "other-cache")


def _repo(root: Path) -> Path:
    root.mkdir()
    service = root / "rec.yaml"
    service.write_text(SERVICE)
    for args in (["init", "-q", "-b", "main"], ["add", "rec.yaml"], ["commit", "-q", "-m", "service"]):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)
    return service


def test_promote_verifies_an_s3_checkpoint_of_a_job(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "Promote Test")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "promote@example.invalid")
    (tmp_path / "gitconfig").write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    from vlmr1_core.checkpoint_store import upload_checkpoint

    store = S3Store(bucket)
    infos: dict[int, CheckpointInfo] = {}
    for step, reward in [(2, 0.7), (4, 0.4)]:
        infos[step] = save_checkpoint(
            tmp_path / "run", step, lambda d: (d / "model.safetensors").write_bytes(b"w"), {"reward": reward}
        )
        upload_checkpoint(store, infos[step].path, f"run/checkpoints/checkpoint-{step}")
    prefix = f"s3://{bucket}/run/checkpoints"
    job: dict[str, Any] = {
        "metadata": {"name": "rec-job"},
        "spec": {"checkpoint": {"uri": f"s3://{bucket}/run"}},
        "status": {
            "phase": "Succeeded",
            "checkpoints": [
                {"uri": f"{prefix}/checkpoint-{s}", "step": s, "digest": i.digest, "metrics": i.metrics}
                for s, i in infos.items()
            ],
        },
    }
    service = _repo(tmp_path / "deploy")
    request = Request(service=service, job="rec-job", namespace="ml", selection=parse_selection("best"))
    outcome = promote(request, lambda ns, name: job, lambda line: None)
    assert outcome.status == "promoted" and outcome.pin.digest == infos[2].digest
    assert f"uri: {prefix}/checkpoint-2" in service.read_text()
