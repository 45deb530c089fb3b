"""method: sft — TRL's SFTTrainer with vlmr1's data, modes, checkpoints and a pinned GRPO start."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from vlmr1_core.checkpoints import MANIFEST, verify_checkpoint
from vlmr1_core.config import TrainerConfig
from vlmr1_trainer.progress.curve import read_run
from vlmr1_trainer.sft import build_sft_trainer
from vlmr1_trainer.train import CHECKPOINTS, RunOptions, train

from .test_train import moved, snapshot

REPO = Path(__file__).resolve().parents[2]
COLOUR = REPO / "examples" / "data" / "colour-shapes"


def sft_config(**overrides: Any) -> TrainerConfig:
    data: dict[str, Any] = {
        "method": "sft",
        "model": {"uri": "builtin://tiny-qwen2.5-vl"},
        "task": "mcq",
        "datasets": [{"jsonl": str(COLOUR / "train.jsonl"), "imageRoot": str(COLOUR / "images")}],
        "training": {
            "maxSteps": 4,
            "perDeviceBatchSize": 4,
            "gradientAccumulationSteps": 1,
            "saveSteps": 2,
            "learningRate": 1e-3,
            "precision": "fp32",
        },
        "checkpoint": {"bestMetric": "loss", "greaterIsBetter": False},
    }
    for key, value in overrides.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and key in data else value
    return TrainerConfig.model_validate(data)


def moved_parts(cfg: TrainerConfig, out: Path) -> tuple[set[str], set[str]]:
    trainer, _, _ = build_sft_trainer(cfg, RunOptions(output_dir=out))
    before = snapshot(trainer.model)
    trainer.train()
    changed = moved(before, trainer.model)
    vision = {n for n in changed if ".visual." in f".{n}."}
    return vision, changed - vision


def test_sft_learns_the_answer_turns_and_saves_verified_checkpoints(tmp_path: Path) -> None:
    cfg = sft_config(
        training={"maxSteps": 40, "perDeviceBatchSize": 16, "saveSteps": 20, "lrScheduler": "constant"},
        evaluation={
            "datasets": [
                {
                    "name": "val",
                    "jsonl": str(COLOUR / "val.jsonl"),
                    "imageRoot": str(COLOUR / "images"),
                    "maxSamples": 16,
                }
            ]
        },
    )
    result = train(cfg, RunOptions(output_dir=tmp_path))
    assert result.steps == 40
    losses = [e["loss"] for e in result.log_history if "loss" in e and "train_runtime" not in e]
    assert len(losses) == 40 and sum(losses[-10:]) < 0.5 * sum(losses[:10]), losses
    assert [c.step for c in result.checkpoints] == [20, 40]
    for info in result.checkpoints:
        assert verify_checkpoint(info.path).digest == info.digest
        manifest = json.loads((info.path / MANIFEST).read_text())
        assert manifest["config"]["method"] == "sft"
        assert "loss" in info.metrics and "eval/val/mcq_acc" in info.metrics


def test_sft_modes_train_what_they_say(tmp_path: Path) -> None:
    vision, language = moved_parts(sft_config(), tmp_path / "full")
    assert vision and language
    vision, language = moved_parts(sft_config(finetuning={"mode": "freezeVision"}), tmp_path / "frozen")
    assert language and vision == set()
    lora = sft_config(finetuning={"mode": "lora", "lora": {"r": 4, "alpha": 8}})
    vision, language = moved_parts(lora, tmp_path / "lora")
    assert vision == set() and language and all("lora_" in n for n in language)


def _vlmr1(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vlmr1_cli", *args], capture_output=True, text=True, timeout=600)


def _job(tmp: Path, spec: dict[str, Any], name: str) -> Path:
    path = tmp / f"{name}.yaml"
    doc = {"apiVersion": "vlmr1.io/v1alpha1", "kind": "GRPOJob", "metadata": {"name": name}, "spec": spec}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _grpo_from(checkpoint: Path, digest: str) -> dict[str, Any]:
    return {
        "model": {"uri": str(checkpoint), "family": "qwen2.5-vl", "digest": digest},
        "task": "mcq",
        "datasets": [{"jsonl": str(COLOUR / "train.jsonl"), "imageRoot": str(COLOUR / "images")}],
        "grpo": {"numGenerations": 2, "maxCompletionLength": 16},
        "training": {"maxSteps": 1, "perDeviceBatchSize": 2, "gradientAccumulationSteps": 1, "precision": "fp32"},
    }


def test_an_sft_checkpoint_pinned_by_digest_starts_a_grpo_job(tmp_path: Path) -> None:
    sft_dir = tmp_path / "sft"
    spec = sft_config(training={"maxSteps": 2}).model_dump(by_alias=True, exclude_none=True)
    assert _vlmr1("run", str(_job(tmp_path, spec, "sft")), "--output", str(sft_dir)).returncode == 0
    checkpoint = sft_dir / CHECKPOINTS / "checkpoint-2"
    digest = verify_checkpoint(checkpoint).digest
    assert digest is not None

    ok = _vlmr1("run", str(_job(tmp_path, _grpo_from(checkpoint, digest), "grpo")), "--output", str(tmp_path / "g"))
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert read_run(tmp_path / "g").steps == [1]

    # Another digest: refused before any step, naming both digests and the manifest line.
    other = "sha256:" + "0" * 64
    job = _job(tmp_path, _grpo_from(checkpoint, other), "wrong")
    refused = _vlmr1("run", str(job), "--output", str(tmp_path / "w"))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"has digest {digest}, not the pinned {other}" in refused.stderr
    assert f"{job}:" in refused.stderr and "spec.model.digest" in refused.stderr
    assert not (tmp_path / "w" / CHECKPOINTS).exists()

    # A file of the pinned checkpoint changed: it no longer verifies, whatever the digest says.
    tampered = tmp_path / "tampered"
    shutil.copytree(checkpoint, tampered)
    (tampered / "config.json").write_text((tampered / "config.json").read_text() + " ")
    broken = _vlmr1("run", str(_job(tmp_path, _grpo_from(tampered, digest), "t")), "--output", str(tmp_path / "t"))
    assert broken.returncode == 2 and "does not verify against its manifest" in broken.stderr


def test_a_digest_on_a_model_that_is_no_checkpoint_is_refused(tmp_path: Path) -> None:
    spec = _grpo_from(Path("x"), "sha256:" + "1" * 64)
    spec["model"] = {"uri": "builtin://tiny-qwen2.5-vl", "digest": "sha256:" + "1" * 64}
    result = _vlmr1("run", str(_job(tmp_path, spec, "nocheckpoint")), "--output", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "model.digest pins a vlmr1 checkpoint, but builtin://tiny-qwen2.5-vl is not one" in result.stderr


@pytest.mark.parametrize(
    ("turn", "problem"),
    [("", "the gpt turn is empty"), ("   ", "the gpt turn is empty")],
)
def test_a_line_without_a_target_is_named(tmp_path: Path, turn: str, problem: str) -> None:
    lines = (COLOUR / "train.jsonl").read_text().splitlines()[:3]
    bad = json.loads(lines[1])
    bad["conversations"][1]["value"] = turn
    lines[1] = json.dumps(bad)
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(lines) + "\n")
    spec = sft_config().model_dump(by_alias=True, exclude_none=True)
    spec["datasets"] = [{"jsonl": str(data), "imageRoot": str(COLOUR / "images")}]
    result = _vlmr1("run", str(_job(tmp_path, spec, "bad")), "--output", str(tmp_path / "o"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{data}:2: {problem}" in result.stderr


def test_sft_spec_rules() -> None:
    with pytest.raises(ValueError, match="method sft trains on the answer turns and uses no rewards"):
        sft_config(rewards=[{"name": "mcq"}])
    with pytest.raises(ValueError, match="method sft logs no reward"):
        sft_config(checkpoint={"bestMetric": "reward"})
    assert sft_config().rewards == []


def test_the_sft_example_runs(tmp_path: Path) -> None:
    example = REPO / "examples" / "grpojob-colour-sft-local.yaml"
    result = _vlmr1("run", str(example), "--output", str(tmp_path), "--max-steps", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loss:" in result.stdout and "eval/colour-shapes-val/mcq_acc: step 0:" in result.stdout
    assert verify_checkpoint(tmp_path / CHECKPOINTS / "checkpoint-2").ok


def test_lines_without_a_target_are_skipped_and_counted_when_asked(tmp_path: Path) -> None:
    from vlmr1_trainer.preflight import check_inputs

    lines = (COLOUR / "train.jsonl").read_text().splitlines()[:4]
    for index in (1, 3):
        bad = json.loads(lines[index])
        bad["conversations"][1]["value"] = " "
        lines[index] = json.dumps(bad)
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(lines) + "\n")
    datasets = [{"jsonl": str(data), "imageRoot": str(COLOUR / "images")}]
    inputs = check_inputs(sft_config(datasets=datasets, onBadSample="skip"))
    assert [s.line for s in inputs.dataset.samples] == [1, 3]
    report = inputs.dataset.report
    assert (report.loaded, report.skipped) == (2, 2)
    assert f"{data}:2: the gpt turn is empty" in report.problems[0]
    # GRPO does not learn the answer turn: an empty one is only an empty ground truth there.
    grpo = sft_config(datasets=datasets, method="grpo", rewards=[{"name": "mcq"}], checkpoint={"bestMetric": "reward"})
    assert len(check_inputs(grpo).dataset.samples) == 4


def test_a_lora_sft_checkpoint_starts_a_grpo_job_merged_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setenv("VLMR1_CACHE_DIR", str(tmp_path / "cache"))  # merged models land here

    from vlmr1_trainer.evaluation.policy import load_files
    from vlmr1_trainer.vlm import load_vlm

    lora = sft_config(finetuning={"mode": "lora", "lora": {"r": 4, "alpha": 8}}, training={"maxSteps": 2})
    train(lora, RunOptions(output_dir=tmp_path / "sft"))
    checkpoint = tmp_path / "sft" / CHECKPOINTS / "checkpoint-2"
    assert (checkpoint / "adapter_config.json").is_file()
    digest = verify_checkpoint(checkpoint).digest
    assert digest is not None

    spec = TrainerConfig.model_validate(_grpo_from(checkpoint, digest)).model
    loaded = load_vlm(spec)
    merged_dir = Path(loaded.source.pretrained)
    # The merge is cached under the checkpoint's digest; TRL's reference model loads from it too.
    assert merged_dir == tmp_path / "cache" / "merged" / digest.removeprefix("sha256:")
    assert loaded.model.config._name_or_path == str(merged_dir)
    expected = load_files(checkpoint, lora.model, device="cpu").model.state_dict()
    got = loaded.model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in expected.items())

    job = _job(tmp_path, _grpo_from(checkpoint, digest), "from-lora")
    result = _vlmr1("run", str(job), "--output", str(tmp_path / "g"))
    assert result.returncode == 0, result.stderr[-2000:]
