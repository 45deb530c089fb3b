"""bench/learning.py and bench/rl_vs_sft.py: the manifests they run and the numbers they report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from vlmr1_core.api.grpojob import GRPOJob

from ._bench import load

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"


learning = load("learning")
rl_vs_sft = load("rl_vs_sft")


def test_seed_and_overrides_land_in_a_valid_job() -> None:
    doc = learning.job_for_seed(learning.DEFAULT_JOB, 7, ["grpo.lossType=dapo", "grpo.temperature=1.0"])
    job = GRPOJob.model_validate(doc)
    assert job.spec.training.seed == 7
    assert (job.spec.grpo.loss_type, job.spec.grpo.temperature) == ("dapo", 1.0)
    # Data paths are absolute, so the manifest runs from any folder.
    assert Path(job.spec.datasets[0].jsonl).is_absolute() and Path(job.spec.datasets[0].jsonl).is_file()
    with pytest.raises(SystemExit, match="PATH=VALUE"):
        learning.job_for_seed(learning.DEFAULT_JOB, 0, ["grpo.lossType"])


def test_tenths_and_the_goal() -> None:
    assert learning.tenths([float(i) for i in range(20)]) == [0.5 + 2 * i for i in range(10)]
    assert learning.tenths([1.0, 3.0]) == [1.0, 3.0]
    result = {"exit_code": 0, "reward_gain": 0.3, "eval_gain_over_start": 0.2, "eval_gain_over_first_checkpoint": 0.16}
    assert learning.met(result, 0.15) and not learning.met(result, 0.17)
    assert not learning.met({**result, "eval_gain_over_start": None}, 0.15)


def test_rl_vs_sft_arms_share_data_evaluation_and_checkpoints() -> None:
    grpo = GRPOJob.model_validate(rl_vs_sft.manifest(rl_vs_sft.GRPO_JOB, 480, 3))
    sft = GRPOJob.model_validate(rl_vs_sft.manifest(rl_vs_sft.SFT_JOB, 1000, 3))
    assert (grpo.spec.method, sft.spec.method) == ("grpo", "sft")
    assert grpo.spec.model.uri == sft.spec.model.uri == "builtin://tiny-qwen2.5-vl-colour"
    assert grpo.spec.datasets == sft.spec.datasets
    for job, steps in ((grpo, 480), (sft, 1000)):
        assert job.spec.evaluation is not None
        assert [d.name for d in job.spec.evaluation.datasets] == list(rl_vs_sft.SETS)
        assert all(Path(d.jsonl).is_file() for d in job.spec.evaluation.datasets)
        assert steps // job.spec.training.save_steps == rl_vs_sft.CHECKPOINTS
        assert job.spec.training.seed == 3


def test_training_seconds_sum_the_logged_step_times(tmp_path: Path) -> None:
    times = [2.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.25, 0.5, 0.75]
    lines = [{"event": "progress", "step": s, "step_time_seconds": t} for s, t in enumerate(times, start=1)]
    lines.append({"event": "checkpoint", "step": 9, "metrics": {}})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert rl_vs_sft.training_seconds(tmp_path) == (9, 8.0)
    # Calibration ignores the first five steps' warm-up: the median of the rest.
    assert rl_vs_sft.steady_step_seconds(tmp_path) == 0.5


def test_every_colour_example_is_a_job_the_benches_know() -> None:
    for path in (learning.DEFAULT_JOB, rl_vs_sft.SFT_JOB):
        assert yaml.safe_load(path.read_text())["spec"]["model"]["uri"] == "builtin://tiny-qwen2.5-vl-colour"


def test_rec_budget_data_answers_score_full_marks(tmp_path: Path) -> None:
    """The REC bench's answers are tight boxes in the model's own coordinates: each scores 1.0
    on rec_iou and rec_format through the real data loader and the family's columns."""
    import numpy as np
    from PIL import Image

    from vlmr1_trainer.data import DataSource, load_samples
    from vlmr1_trainer.rewards import build

    rec_budget = load("rec_budget")
    jsonl = rec_budget.write_split(tmp_path, "val", 12, seed=2)
    samples, report = load_samples([DataSource(jsonl, tmp_path / "images")], "error")
    assert report.skipped == 0 and len(samples) == 12
    iou, fmt = build("rec_iou"), build("rec_format")
    for sample in samples:
        pixels = np.asarray(Image.open(sample.image_paths[0]).convert("L"))
        ys, xs = np.nonzero(pixels != pixels[0, 0])  # the background is plain: the rest is the shape
        box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
        assert f'"bbox_2d": {box}' in sample.target
        size = {"image_size": [[56, 56]], "input_size": [[56, 56]]}
        assert iou([sample.target], solution=[sample.solution], **size) == [pytest.approx(1.0)]
        assert fmt([sample.target]) == [1.0]
