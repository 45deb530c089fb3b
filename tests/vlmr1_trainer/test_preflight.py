"""Cheapest first: rewards and every data file are checked before any weights load, and the
pods' entry point reports a user error as one line with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from vlmr1_core.config import TrainerConfig
from vlmr1_core.errors import EXIT_USER_ERROR, UserError
from vlmr1_trainer import preflight
from vlmr1_trainer.data import BadSampleError, DataFileError
from vlmr1_trainer.train import RunOptions, build_grpo_trainer
from vlmr1_trainer.vlm.base import VLMFamily

REPO = Path(__file__).resolve().parents[2]
SHAPES = REPO / "examples" / "data" / "rec-shapes"
GOOD_LINE = (SHAPES / "train.jsonl").read_text().splitlines()[0]


def config(**overrides: Any) -> TrainerConfig:
    data: dict[str, Any] = {
        "model": {"uri": "builtin://tiny-qwen2.5-vl"},
        "task": "rec",
        "datasets": [{"jsonl": str(SHAPES / "train.jsonl"), "imageRoot": str(SHAPES / "images")}],
        "grpo": {"numGenerations": 2, "maxCompletionLength": 8},
        "training": {"maxSteps": 1, "perDeviceBatchSize": 2, "gradientAccumulationSteps": 1},
    }
    data.update(overrides)
    return TrainerConfig.model_validate(data)


def bad_jsonl(tmp_path: Path) -> Path:
    """Two good samples, then one whose image does not exist (line 3)."""
    missing = json.loads(GOOD_LINE) | {"image": "missing.png"}
    path = tmp_path / "train.jsonl"
    path.write_text(f"{GOOD_LINE}\n{GOOD_LINE}\n{json.dumps(missing)}\n")
    return path


@pytest.fixture
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a model or processor fails the test: the checks must come first."""

    def fail(*args: Any, **kwargs: Any) -> Any:
        pytest.fail("a model was loaded before the inputs were checked")

    monkeypatch.setattr(VLMFamily, "load_model", fail)
    monkeypatch.setattr(VLMFamily, "load_processor", fail)


@pytest.mark.usefixtures("no_model_load")
def test_a_bad_sample_is_reported_before_the_model_loads(tmp_path: Path) -> None:
    cfg = config(datasets=[{"jsonl": str(bad_jsonl(tmp_path)), "imageRoot": str(SHAPES / "images")}])
    with pytest.raises(BadSampleError) as info:
        build_grpo_trainer(cfg, RunOptions(output_dir=tmp_path / "out"))
    assert str(info.value).startswith(f"{tmp_path / 'train.jsonl'}:3: image ")
    assert "missing.png does not exist" in str(info.value)
    assert "set spec.onBadSample: skip" in str(info.value)


@pytest.mark.usefixtures("no_model_load")
def test_a_missing_dataset_file_names_the_spec_field(tmp_path: Path) -> None:
    cfg = config(datasets=[{"jsonl": str(SHAPES / "train.jsonl")}, {"jsonl": str(tmp_path / "nope.jsonl")}])
    with pytest.raises(DataFileError) as info:
        build_grpo_trainer(cfg, RunOptions(output_dir=tmp_path / "out"))
    assert info.value.field == "spec.datasets[1].jsonl"
    assert f"dataset file {tmp_path / 'nope.jsonl'} does not exist" in str(info.value)


@pytest.mark.usefixtures("no_model_load")
def test_a_missing_image_folder_names_the_spec_field(tmp_path: Path) -> None:
    cfg = config(datasets=[{"jsonl": str(SHAPES / "train.jsonl"), "imageRoot": str(tmp_path / "imgs")}])
    with pytest.raises(UserError, match=r"^spec\.datasets\[0\]\.imageRoot: image folder .*imgs does not exist"):
        build_grpo_trainer(cfg, RunOptions(output_dir=tmp_path / "out"))


@pytest.mark.usefixtures("no_model_load")
def test_evaluation_data_is_checked_before_training_starts(tmp_path: Path) -> None:
    cfg = config(evaluation={"datasets": [{"name": "val", "jsonl": str(tmp_path / "val.jsonl")}]})
    with pytest.raises(UserError, match=r"^spec\.evaluation\.datasets\[0\]\.jsonl: dataset file .*val\.jsonl"):
        build_grpo_trainer(cfg, RunOptions(output_dir=tmp_path / "out"))


@pytest.mark.usefixtures("no_model_load")
def test_an_unknown_reward_is_reported_before_the_data_is_read(tmp_path: Path) -> None:
    # The dataset is missing too: the reward, cheaper, must be what is reported.
    cfg = config(rewards=[{"name": "format"}, {"name": "rec_iuo"}], datasets=[{"jsonl": str(tmp_path / "x.jsonl")}])
    with pytest.raises(UserError) as info:
        build_grpo_trainer(cfg, RunOptions(output_dir=tmp_path / "out"))
    assert info.value.field == "spec.rewards[1].name"
    assert "unknown reward 'rec_iuo'; did you mean 'rec_iou'?" in str(info.value)


@pytest.mark.usefixtures("no_model_load")
def test_an_unknown_reward_parameter_names_the_params_field(tmp_path: Path) -> None:
    cfg = config(rewards=[{"name": "rec_acc", "params": {"thresh": 0.7}}])
    with pytest.raises(UserError, match=r"^spec\.rewards\[0\]\.params: reward 'rec_acc' has no parameter thresh"):
        build_grpo_trainer(cfg, RunOptions(output_dir=tmp_path / "out"))


def test_the_checks_return_what_training_uses(tmp_path: Path) -> None:
    inputs = preflight.check_inputs(config(rewards=[{"name": "rec_iou"}, {"name": "format"}]))
    assert [r.name for r in inputs.rewards] == ["rec_iou", "format"]
    assert len(inputs.dataset) == 48 and inputs.dataset.row_hook is None


def test_skip_mode_still_trains_on_the_good_samples(tmp_path: Path) -> None:
    cfg = config(
        datasets=[{"jsonl": str(bad_jsonl(tmp_path)), "imageRoot": str(SHAPES / "images")}], onBadSample="skip"
    )
    inputs = preflight.check_inputs(cfg)
    assert (inputs.dataset.report.loaded, inputs.dataset.report.skipped) == (2, 1)


def pod(config_file: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m vlmr1_trainer`` as a pod runs it (one process)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return subprocess.run(
        [sys.executable, "-m", "vlmr1_trainer", "--config", str(config_file), "--output", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, env=environ | env,
    )  # fmt: skip


def write_config(tmp_path: Path, cfg: TrainerConfig) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg.to_yaml_dict(), sort_keys=False))
    return path


def test_the_pod_entry_point_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    cfg = config(datasets=[{"jsonl": str(bad_jsonl(tmp_path)), "imageRoot": str(SHAPES / "images")}])
    proc = pod(write_config(tmp_path, cfg), tmp_path)
    assert proc.returncode == EXIT_USER_ERROR, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert f"{tmp_path / 'train.jsonl'}:3: image " in proc.stderr

    debug = pod(write_config(tmp_path, cfg), tmp_path, VLMR1_DEBUG="1")
    assert debug.returncode == EXIT_USER_ERROR
    assert "Traceback" in debug.stderr and f"{tmp_path / 'train.jsonl'}:3: image " in debug.stderr


def test_a_bad_trainer_config_names_file_line_and_field(tmp_path: Path) -> None:
    path = write_config(tmp_path, config())
    text = path.read_text().replace("numGenerations: 2", "numGenerations: 1")
    path.write_text(text)
    line = next(i for i, x in enumerate(text.splitlines(), start=1) if "numGenerations" in x)
    proc = pod(path, tmp_path)
    assert proc.returncode == EXIT_USER_ERROR
    assert f"{path}:{line}: grpo.numGenerations: Input should be greater than or equal to 2" in proc.stderr
    assert "Traceback" not in proc.stderr
