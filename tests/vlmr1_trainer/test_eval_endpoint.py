"""`vlmr1 eval --endpoint` against the CPU dev engine (vlmr1_serving.hfserver) serving a tiny
checkpoint: with greedy decoding the served predictions equal the in-process ones sample by
sample, so the metrics do too, and the results record how they were produced."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vlmr1_cli import main
from vlmr1_core.checkpoints import CheckpointInfo, save_checkpoint
from vlmr1_core.config import TrainerConfig

REPO = Path(__file__).resolve().parents[2]
SHAPES = REPO / "examples" / "data" / "rec-shapes"
VAL = f"{SHAPES / 'val.jsonl'}:{SHAPES / 'images'}"
STARTUP_DEADLINE = 120.0
"""Seconds for the server to load (the torch and transformers imports dominate)."""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> CheckpointInfo:
    """A verified vlmr1 checkpoint of the builtin tiny Qwen2.5-VL (random weights: any prompt
    difference would change its answers), with the training config a real run records."""
    from vlmr1_trainer.vlm.builtin import MARKER, ensure_builtin

    root = tmp_path_factory.mktemp("ckpt")
    built = ensure_builtin("tiny-qwen2.5-vl", cache_root=root / "cache")

    def write(folder: Path) -> None:
        for path in built.iterdir():
            if path.name != MARKER:
                shutil.copy(path, folder / path.name)

    config = TrainerConfig.model_validate(
        {
            "model": {"uri": "builtin://tiny-qwen2.5-vl"},
            "task": "rec",
            "datasets": [{"jsonl": str(SHAPES / "train.jsonl"), "imageRoot": str(SHAPES / "images")}],
            "grpo": {"maxCompletionLength": 12},
        }
    )
    return save_checkpoint(root / "run", 5, write, metrics={"reward": 0.1}, config=config)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def served(checkpoint: CheckpointInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The CPU dev engine serving ``checkpoint`` on 127.0.0.1 as "tiny-rec"; its /v1 base URL."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("serve") / "server.log"
    argv = [sys.executable, "-m", "vlmr1_serving.hfserver", "--model", str(checkpoint.path), "--host", "127.0.0.1",
            "--port", str(port), "--served-model-name", "tiny-rec", "--threads", "1"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_DEADLINE
    try:
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            try:
                code = proc.wait(timeout=0.5)  # returns at once if the server died
                pytest.fail(f"server exited with {code}:\n{log_path.read_text()}")
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not healthy in {STARTUP_DEADLINE}s:\n{log_path.read_text()}")
        yield base + "/v1"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _samples(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "val.samples.jsonl").read_text().splitlines()]


def test_endpoint_predictions_equal_in_process_ones(
    checkpoint: CheckpointInfo, served: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["eval", "--checkpoint", str(checkpoint.path), "--data", VAL, "--task", "rec", "--name", "val",
              "--max-samples", "6", "--no-progress"]  # fmt: skip
    assert main([*common, "--batch-size", "3", "--output", str(tmp_path / "local")]) == 0
    # No --model: the endpoint's only model; two requests in flight.
    assert main([*common, "--endpoint", served, "--concurrency", "2", "--output", str(tmp_path / "served")]) == 0
    out = capsys.readouterr().out
    assert f"evaluated {served} ({checkpoint.path}) ({checkpoint.digest})" in out

    local, remote = _samples(tmp_path / "local"), _samples(tmp_path / "served")
    assert len(local) == 6
    assert [s["prediction"] for s in remote] == [s["prediction"] for s in local]
    assert len({s["prediction"] for s in local}) > 1  # the images matter: not one answer for all
    assert remote == local  # parsed answers, scores and details too

    local_record = json.loads((tmp_path / "local" / "metrics.json").read_text())
    remote_record = json.loads((tmp_path / "served" / "metrics.json").read_text())
    assert remote_record["metrics"] == local_record["metrics"]
    assert set(local_record["metrics"]) == {f"eval/val/{m}" for m in ("rec_acc", "rec_acc_reward", "samples",
                                                                      "unparsed")}  # fmt: skip
    assert local_record["source"] == {"kind": "model"}
    assert remote_record["source"] == {"kind": "endpoint", "endpoint": served, "model": "tiny-rec"}
    assert remote_record["digest"] == local_record["digest"] == checkpoint.digest


def test_a_wrong_model_name_is_a_clear_error(
    checkpoint: CheckpointInfo, served: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["eval", "--checkpoint", str(checkpoint.path), "--endpoint", served, "--model", "other",
                 "--data", VAL, "--task", "rec", "--max-samples", "1", "--output", str(tmp_path / "o"),
                 "--no-progress"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert f"{served}/chat/completions answered 404 for sample {SHAPES / 'val.jsonl'}:1" in err
    assert "model 'other' is not served here" in err and "Traceback" not in err
