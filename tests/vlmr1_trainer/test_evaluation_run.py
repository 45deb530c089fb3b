"""Evaluation end to end on the builtin tiny models: `vlmr1 eval`, and the trainer scoring
every saved checkpoint (metrics in the manifest, pinned by the digest)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vlmr1_core.checkpoints import verify_checkpoint
from vlmr1_core.config import TrainerConfig
from vlmr1_trainer.evaluation import generate as generate_module
from vlmr1_trainer.evaluation.policy import PolicyError, load_policy
from vlmr1_trainer.evaluation.runner import EvalSet, evaluate
from vlmr1_trainer.train import CHECKPOINTS, EVALUATION, RunOptions, train

REPO = Path(__file__).resolve().parents[2]
SHAPES = REPO / "examples" / "data" / "rec-shapes"
VAL = f"{SHAPES / 'val.jsonl'}:{SHAPES / 'images'}"


def job(**overrides: Any) -> TrainerConfig:
    data: dict[str, Any] = {
        "model": {"uri": "builtin://tiny-qwen2.5-vl"},
        "task": "rec",
        "datasets": [{"jsonl": str(SHAPES / "train.jsonl"), "imageRoot": str(SHAPES / "images")}],
        "grpo": {"numGenerations": 2, "maxCompletionLength": 8},
        "training": {"maxSteps": 2, "perDeviceBatchSize": 2, "gradientAccumulationSteps": 1, "saveSteps": 1},
        "evaluation": {
            "datasets": [
                {
                    "name": "val",
                    "jsonl": str(SHAPES / "val.jsonl"),
                    "imageRoot": str(SHAPES / "images"),
                    "maxSamples": 5,
                }
            ],
            "batchSize": 2,
        },
        "checkpoint": {"bestMetric": "eval/val/rec_acc"},
    }
    data.update(overrides)
    return TrainerConfig.model_validate(data)


def vlmr1(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vlmr1_cli", *args], capture_output=True, text=True, timeout=600, cwd=cwd
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    train(job(), RunOptions(output_dir=out))
    return out / CHECKPOINTS


def test_every_checkpoint_is_evaluated_and_the_results_are_pinned(trained: Path) -> None:
    for step in (1, 2):
        checkpoint = trained / f"checkpoint-{step}"
        result = verify_checkpoint(checkpoint)
        assert result.ok, result.problems()
        assert result.metrics["eval/val/samples"] == 5
        recorded = json.loads((checkpoint / EVALUATION / "metrics.json").read_text())
        assert recorded["metrics"] == {k: v for k, v in result.metrics.items() if k.startswith("eval/")}
        lines = (checkpoint / EVALUATION / "val.samples.jsonl").read_text().splitlines()
        assert [json.loads(line)["source"] for line in lines] == [f"{SHAPES / 'val.jsonl'}:{i}" for i in range(1, 6)]
        # The accuracy is the share of samples scored correct, as recorded sample by sample.
        scores = [json.loads(line)["score"] for line in lines]
        assert result.metrics["eval/val/rec_acc"] == pytest.approx(sum(scores) / len(scores))
    # The evaluation files are in the manifest: editing a result breaks the checkpoint's digest.
    assert "evaluation/metrics.json" in json.loads((trained / "checkpoint-2" / "manifest.json").read_text())["files"]


def test_vlmr1_eval_reproduces_the_in_training_evaluation(trained: Path, tmp_path: Path) -> None:
    """Greedy generation is deterministic: the standalone command scores the checkpoint exactly
    as the trainer did, sample by sample."""
    checkpoint = trained / "checkpoint-2"
    proc = vlmr1("eval", "--checkpoint", str(checkpoint), "--data", VAL, "--task", "rec", "--name", "val",
                 "--max-samples", "5", "--batch-size", "3", "--output", str(tmp_path / "out"),
                 "--no-progress")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    standalone = json.loads((tmp_path / "out" / "metrics.json").read_text())
    in_training = json.loads((checkpoint / EVALUATION / "metrics.json").read_text())
    assert standalone["metrics"] == in_training["metrics"]
    assert standalone["digest"] == verify_checkpoint(checkpoint).digest and standalone["step"] == 2
    ours = [json.loads(x)["prediction"] for x in (tmp_path / "out" / "val.samples.jsonl").read_text().splitlines()]
    theirs = [
        json.loads(x)["prediction"] for x in (checkpoint / EVALUATION / "val.samples.jsonl").read_text().splitlines()
    ]
    assert ours == theirs
    assert "eval/val/rec_acc" in proc.stdout and standalone["digest"] in proc.stdout


def test_a_tampered_checkpoint_is_refused(trained: Path, tmp_path: Path) -> None:
    copy = tmp_path / "checkpoint-1"
    subprocess.run(["cp", "-r", str(trained / "checkpoint-1"), str(copy)], check=True)
    with (copy / "config.json").open("a") as fh:
        fh.write(" ")
    proc = vlmr1("eval", "--checkpoint", str(copy), "--data", VAL, "--task", "rec", "--output", str(tmp_path / "o"))
    assert proc.returncode != 0
    assert "does not verify against its manifest: changed: config.json" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_lora_checkpoints_are_merged_into_their_base_and_evaluated(tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(job(finetuning={"mode": "lora", "lora": {"r": 4, "alpha": 8}}), RunOptions(output_dir=out, max_steps=1))
    checkpoint = out / CHECKPOINTS / "checkpoint-1"
    assert (checkpoint / "adapter_config.json").is_file()
    assert verify_checkpoint(checkpoint).metrics["eval/val/samples"] == 5
    policy = load_policy(str(checkpoint), device="cpu")
    assert type(policy.model).__name__ == "Qwen2_5_VLForConditionalGeneration"  # merged, not a PeftModel


def test_a_plain_model_uri_is_evaluated_as_a_baseline(tmp_path: Path) -> None:
    proc = vlmr1("eval", "--checkpoint", "builtin://tiny-internvl", "--data", VAL, "--task", "rec",
                 "--max-samples", "3", "--max-new-tokens", "4", "--output", str(tmp_path / "o"),
                 "--no-progress")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert record["digest"] is None and record["checkpoint"] == "builtin://tiny-internvl"
    assert record["metrics"]["eval/val/samples"] == 3


def test_a_model_of_unknown_family_needs_family() -> None:
    with pytest.raises(PolicyError, match="--family"):
        load_policy("org/some-model", device="cpu")


def test_the_runner_scores_what_the_model_generates(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Answers in the model-input coordinates of Qwen2.5-VL are rescaled to the original image:
    the right box for the first two samples, nothing for the third."""
    policy = load_policy("builtin://tiny-qwen2.5-vl", device="cpu")

    def answers(model: Any, processor: Any, rows: list[dict[str, Any]], **_: Any) -> list[str]:
        out = []
        for i, row in enumerate(rows):
            (w, h), (iw, ih) = row["image_size"], row["input_size"]
            x1, y1, x2, y2 = json.loads(row["solution"].split("<answer>")[1].split("</answer>")[0])
            box = [round(x1 * iw / w), round(y1 * ih / h), round(x2 * iw / w), round(y2 * ih / h)]
            answer = json.dumps({"bbox_2d": box})  # the JSON answer VLM-R1's REC prompt asks for
            out.append(f"<think>.</think><answer>{answer}</answer>" if i < 2 else "I do not know")
        return out

    monkeypatch.setattr(generate_module, "greedy_generate", answers)
    metrics = evaluate(policy, [EvalSet("val", "rec", str(SHAPES / "val.jsonl"), str(SHAPES / "images"), 3)],
                       output=tmp_path)  # fmt: skip
    assert metrics == {
        "eval/val/rec_acc": pytest.approx(2 / 3),
        "eval/val/rec_acc_reward": pytest.approx(2 / 3),
        "eval/val/samples": 3,
        "eval/val/unparsed": 1,
    }
    samples = [json.loads(x) for x in (tmp_path / "val.samples.jsonl").read_text().splitlines()]
    assert [s["score"] for s in samples] == [1.0, 1.0, 0.0]
    assert samples[2]["parsed"] is None and samples[2]["error"]


def test_bad_arguments_are_clear_errors(tmp_path: Path) -> None:
    proc = vlmr1("eval", "--checkpoint", "builtin://tiny-qwen2.5-vl", "--data", "a:b:c", "--task", "rec")
    assert proc.returncode != 0 and "expected FILE.jsonl or FILE.jsonl:IMAGE_ROOT" in proc.stderr
    proc = vlmr1("eval", "--checkpoint", "builtin://tiny-qwen2.5-vl", "--data", str(tmp_path / "missing.jsonl"),
                 "--task", "rec", "--output", str(tmp_path / "o"))  # fmt: skip
    assert proc.returncode != 0 and "missing.jsonl" in proc.stderr and "Traceback" not in proc.stderr
