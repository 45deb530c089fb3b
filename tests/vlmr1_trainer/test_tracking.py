"""Experiment tracking (training.reportTo) for real: GRPO steps on the tiny builtin model report to
TensorBoard (read back with TensorBoard's own event reader), to a real MLflow tracking server
(started here, queried through its REST API with MlflowClient) and to W&B in offline mode (its
run file read back); an unreachable tracker is a warning and the run completes.

One shared 3-step run reports to all three trackers; the failure cases run on their own.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from vlmr1_core.config import TrainerConfig
from vlmr1_core.errors import UserError
from vlmr1_trainer.tracking import TENSORBOARD_DIR, GuardedTracker, JobIdentity, RunMetadata, check_installed
from vlmr1_trainer.train import RunOptions, TrainResult, train

REPO = Path(__file__).resolve().parents[2]
SHAPES = REPO / "examples" / "data" / "rec-shapes"
STEPS = 3
JOB, NAMESPACE, PROJECT = "rec-tracked", "team-a", "vlmr1-tests"


def config(**training: Any) -> TrainerConfig:
    return TrainerConfig.model_validate(
        {
            "model": {"uri": "builtin://tiny-qwen2.5-vl"},
            "task": "rec",
            "datasets": [{"jsonl": str(SHAPES / "train.jsonl"), "imageRoot": str(SHAPES / "images")}],
            "grpo": {"numGenerations": 2, "maxCompletionLength": 8},
            "training": {
                "maxSteps": STEPS,
                "perDeviceBatchSize": 2,
                "gradientAccumulationSteps": 1,
                "saveSteps": STEPS,
                "precision": "fp32",
                **training,
            },
        }
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server (tests/tools/install-mlflow.sh, cached) on a free port, with a
    SQLite backend and an artifact folder in a temporary directory."""
    installed = subprocess.run(
        ["bash", str(REPO / "tests" / "tools" / "install-mlflow.sh")], capture_output=True, text=True, timeout=900
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    binary = installed.stdout.strip().splitlines()[-1]
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (root / "server.log").open("w")
    server = subprocess.Popen(
        [binary, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        wait_healthy(url, server, root / "server.log")
        yield url
    finally:
        # Its own process group: `mlflow server` runs uvicorn as a child, which must go too.
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def wait_healthy(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    """Poll the server's /health endpoint until it answers (or the server exits, or 120 s pass)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert server.poll() is None, f"mlflow server exited: {log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"mlflow server not healthy after 120 s: {log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def tracked_run(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainResult]:
    """One GRPO run reporting to TensorBoard, MLflow (the server above) and W&B (offline)."""
    out = tmp_path_factory.mktemp("tracked") / "run"
    cfg = config(reportTo=["tensorboard", "mlflow", "wandb"], project=PROJECT)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", mlflow_server)
        env.setenv("WANDB_MODE", "offline")
        env.setenv("WANDB_SILENT", "true")
        for name in ("WANDB_DIR", "WANDB_PROJECT", "MLFLOW_EXPERIMENT_NAME", "TENSORBOARD_LOGGING_DIR"):
            env.delenv(name, raising=False)
        result = train(cfg, RunOptions(output_dir=out, job_name=JOB, namespace=NAMESPACE))
        # The run's project reached the trackers for the run only: the environment is as it was.
        assert "WANDB_PROJECT" not in os.environ and "MLFLOW_EXPERIMENT_NAME" not in os.environ
    assert result.steps == STEPS
    return out, result


def logged(result: TrainResult, key: str) -> list[tuple[int, float]]:
    """(step, value) of a metric as the trainer logged it, per step (not the closing summary)."""
    return [(int(e["step"]), float(e[key])) for e in result.log_history if key in e and "train_runtime" not in e]


def assert_series(actual: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    """Same steps, same values (to float32 precision: TensorBoard stores scalars as float32)."""
    assert [step for step, _ in actual] == [step for step, _ in expected]
    assert [value for _, value in actual] == pytest.approx([value for _, value in expected], rel=1e-6, abs=1e-7)


def test_tensorboard_events_hold_each_steps_rewards(tracked_run: tuple[Path, TrainResult]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    out, result = tracked_run
    events = EventAccumulator(str(out / TENSORBOARD_DIR), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    for key in ("reward", "rewards/rec_iou/mean", "rewards/rec_format/mean", "kl"):
        assert_series([(e.step, e.value) for e in events.Scalars(f"train/{key}")], logged(result, key))
    assert [step for step, _ in logged(result, "reward")] == list(range(1, STEPS + 1))

    def text(tag: str) -> str:
        (event,) = events.Tensors(f"{tag}/text_summary")
        return str(make_ndarray(event.tensor_proto).item().decode())

    assert text("vlmr1/job") == f"{JOB} (namespace {NAMESPACE})"
    recorded = yaml.safe_load(text("vlmr1/config").removeprefix("```yaml\n").removesuffix("```"))
    assert recorded["training"]["reportTo"] == ["tensorboard", "mlflow", "wandb"]
    assert recorded["rewards"] == [r.to_yaml_dict() for r in config().rewards]


def test_mlflow_run_has_the_job_config_and_reward_history(
    tracked_run: tuple[Path, TrainResult], mlflow_server: str
) -> None:
    from mlflow import MlflowClient

    _, result = tracked_run
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name(PROJECT)
    assert experiment is not None, "training.project names the MLflow experiment"
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == JOB
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["vlmr1.job"] == JOB and params["vlmr1.namespace"] == NAMESPACE
    assert run.data.tags["vlmr1.job"] == JOB and run.data.tags["vlmr1.namespace"] == NAMESPACE
    assert params["config.training.maxSteps"] == str(STEPS)
    assert params["config.grpo.numGenerations"] == "2"
    assert params["config.rewards.0.name"] == "rec_iou" and params["config.rewards.1.name"] == "rec_format"
    assert params["config.model.uri"] == "builtin://tiny-qwen2.5-vl"
    for key in ("reward", "rewards/rec_iou/mean"):
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert_series(history, logged(result, key))


def wandb_records(path: Path) -> Iterator[Any]:
    """The records of a W&B run file (LevelDB's log format behind a ":W&B" header: 32 KiB blocks
    of chunks, each a 7-byte header of checksum, length, type), parsed as W&B's protobuf Record."""
    from wandb.proto import wandb_internal_pb2

    block, data = 32768, path.read_bytes()
    assert data[:4] == b":W&B"
    position, pending = 7, b""
    while position + 7 <= len(data):
        room = block - position % block
        length, kind = struct.unpack("<HB", data[position + 4 : position + 7])
        if room < 7 or (length == 0 and kind == 0):  # block trailer, or padding
            position += room
            continue
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]  # generated protobuf
            record.ParseFromString(pending)
            pending = b""
            yield record


def key(item: Any) -> str:
    """A W&B history or config item's name (``train/reward`` is stored as nested keys)."""
    return str(item.key or "/".join(item.nested_key))


def test_wandb_offline_run_holds_history_and_config(tracked_run: tuple[Path, TrainResult]) -> None:
    out, result = tracked_run
    (run_file,) = (out / "wandb").glob("offline-run-*/run-*.wandb")  # the run folder, not the cwd
    names: list[tuple[str, str]] = []
    history: list[tuple[int, float]] = []
    config_items: dict[str, Any] = {}
    exited = False
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            names.append((record.run.display_name, record.run.project))
        elif kind == "history":
            row = {key(item): json.loads(item.value_json) for item in record.history.item}
            if "train/reward" in row:
                history.append((int(row["train/global_step"]), float(row["train/reward"])))
        elif kind == "config":
            config_items |= {key(item): json.loads(item.value_json) for item in record.config.update}
        elif kind == "exit":
            exited = True
    assert names == [(JOB, PROJECT)]
    assert_series(history, logged(result, "reward"))
    assert config_items["vlmr1"]["job"] == JOB and config_items["vlmr1"]["namespace"] == NAMESPACE
    assert config_items["vlmr1"]["config"]["training"]["maxSteps"] == STEPS
    assert exited, "the W&B run is finished when training ends"


def test_unreachable_trackers_are_warnings_and_only_rank_0_reports(tmp_path: Path) -> None:
    """`vlmr1 run` with two ranks, MLflow pointed at a closed port, W&B online without an API key,
    and TensorBoard: one warning per broken tracker (rank 0's), the run completes, and TensorBoard
    still gets the steps, named from the manifest."""
    spec = config(reportTo=["mlflow", "wandb", "tensorboard"], maxSteps=2, saveSteps=2).to_yaml_dict()
    job = {
        "apiVersion": "vlmr1.io/v1alpha1",
        "kind": "GRPOJob",
        "metadata": {"name": "unreachable-tracker", "namespace": "team-b"},
        "spec": {**spec, "resources": {"accelerator": "cpu", "processesPerNode": 2}},
    }
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump(job))
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    # No W&B key anywhere: no variable, and a home without ~/.netrc.
    env |= {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "vlmr1_cli", "run", str(manifest), "--output", str(out), "--nproc-per-node", "2"],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("experiment tracker mlflow failed (ConnectionError") == 1, proc.stderr[-3000:]
    assert proc.stderr.count("experiment tracker wandb failed") == 1, proc.stderr[-3000:]
    assert "training goes on without it" in proc.stderr
    assert "rank 1/2 finished at step 2" in proc.stderr
    assert (out / "checkpoints" / "checkpoint-2").is_dir()
    event_files = list((out / TENSORBOARD_DIR).iterdir())
    assert len(event_files) == 1, f"one writer, rank 0's: {event_files}"

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    events = EventAccumulator(str(out / TENSORBOARD_DIR), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("train/reward")] == [1, 2]
    (name,) = events.Tensors("vlmr1/job/text_summary")
    assert make_ndarray(name.tensor_proto).item().decode() == "unreachable-tracker (namespace team-b)"


def test_a_tracker_failing_mid_run_is_disabled_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

    class Flaky(TrainerCallback):
        def __init__(self) -> None:
            self.logged = 0

        def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            self.logged += 1
            raise OSError("tracking server went away")

    inner = Flaky()
    guarded = GuardedTracker("tensorboard", inner, RunMetadata(config(), JobIdentity("j", None)))
    args, state, control = TrainingArguments(output_dir="unused", use_cpu=True), TrainerState(), TrainerControl()
    with caplog.at_level(logging.WARNING, logger="vlmr1_trainer.tracking"):
        for _ in range(3):
            assert guarded.on_log(args, state, control, logs={"reward": 1.0}) is None
    assert inner.logged == 1, "disabled after its first failure"
    (warning,) = caplog.records
    assert "tensorboard failed (OSError: tracking server went away); training goes on" in warning.getMessage()


def test_a_tracker_the_image_lacks_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISABLE_MLFLOW_INTEGRATION", "TRUE")  # transformers then treats mlflow as absent
    with pytest.raises(UserError) as caught:
        check_installed(config(reportTo=["tensorboard", "mlflow"]))
    assert caught.value.field == "spec.training.reportTo"
    assert "mlflow" in str(caught.value) and "tensorboard" not in str(caught.value).split("(")[0]
    assert "mlflow-skinny" in (caught.value.fix or "")
    check_installed(config(reportTo=["tensorboard", "wandb"]))


# --- docs/tracking.md ---------------------------------------------------------------------------


def test_doc_manifests_are_valid(tmp_path: Path) -> None:
    """The doc's Secret and GRPOJob: the job validates, names the Secret, and the Secret's keys are
    variables the trackers read."""
    from vlmr1_core.api.grpojob import GRPOJob
    from vlmr1_core.api.manifest import load_manifests

    text = (REPO / "docs" / "tracking.md").read_text(encoding="utf-8")
    blocks = [yaml.safe_load(b) for b in re.findall(r"^```yaml\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)]
    (secret,) = [b for b in blocks if b.get("kind") == "Secret"]
    (job_block,) = [b for b in blocks if b.get("kind") == "GRPOJob"]
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job_block))
    (job,) = load_manifests(path)
    assert isinstance(job, GRPOJob)
    assert job.spec.secrets is not None and job.spec.secrets.tracking is not None
    assert job.spec.secrets.tracking.name == secret["metadata"]["name"]
    assert set(job.spec.training.report_to) == {"tensorboard", "mlflow", "wandb"}
    assert all(key.startswith(("MLFLOW_", "WANDB_")) for key in secret["stringData"])
    (fragment,) = [b for b in blocks if "kind" not in b]
    TrainerConfig.model_validate({"model": {"uri": "builtin://tiny-qwen2.5-vl"}, "datasets": [{"jsonl": "a.jsonl"}],
                                  **fragment["spec"]})  # fmt: skip


def test_sft_reports_its_loss_to_tensorboard(tmp_path: Path) -> None:
    """method: sft goes through the same wiring: its loss per step, named after the job."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    colour = REPO / "examples" / "data" / "colour-shapes"
    cfg = TrainerConfig.model_validate(
        {
            "method": "sft",
            "model": {"uri": "builtin://tiny-qwen2.5-vl"},
            "task": "mcq",
            "datasets": [{"jsonl": str(colour / "train.jsonl"), "imageRoot": str(colour / "images")}],
            "training": {"maxSteps": 2, "perDeviceBatchSize": 2, "gradientAccumulationSteps": 1, "saveSteps": 2,
                         "precision": "fp32", "reportTo": ["tensorboard"]},
            "checkpoint": {"bestMetric": "loss", "greaterIsBetter": False},
        }
    )  # fmt: skip
    result = train(cfg, RunOptions(output_dir=tmp_path / "run", job_name="sft-job"))
    events = EventAccumulator(str(tmp_path / "run" / TENSORBOARD_DIR), size_guidance={"scalars": 0})
    events.Reload()
    assert_series([(e.step, e.value) for e in events.Scalars("train/loss")], logged(result, "loss"))
    assert [step for step, _ in logged(result, "loss")] == [1, 2]
