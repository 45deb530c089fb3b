"""The trainer for real: TRL GRPO steps on the builtin tiny models, on CPU.

A random tiny model scores 0 on every VLM-R1 reward, which makes every advantage 0 and
every gradient 0; these tests register a reward that varies with the text, so that a
step really moves weights and the fine-tuning modes can be told apart by what moved.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from transformers import TrainerCallback

from vlmr1_core.checkpoints import find_resumable, verify_checkpoint
from vlmr1_core.config import TrainerConfig
from vlmr1_trainer.rewards import Reward, available, register
from vlmr1_trainer.train import CHECKPOINTS, RunOptions, build_grpo_trainer, train

REPO = Path(__file__).resolve().parents[2]
SHAPES = REPO / "examples" / "data" / "rec-shapes"

if "test_char_variety" not in available():

    @register("test_char_variety")
    class CharVariety(Reward):
        """Distinct characters / 32: varies between random completions, so advantages are non-zero."""

        columns = ()

        def score(self, completion: str, sample: Mapping[str, Any]) -> float | None:
            return min(len(set(completion)) / 32, 1.0)


def config(tmp: Path | None = None, **overrides: Any) -> TrainerConfig:
    data: dict[str, Any] = {
        "model": {"uri": "builtin://tiny-qwen2.5-vl"},
        "task": "rec",
        "datasets": [{"jsonl": str(SHAPES / "train.jsonl"), "imageRoot": str(SHAPES / "images")}],
        "rewards": [{"name": "test_char_variety"}, {"name": "rec_iou", "weight": 2.0}],
        "grpo": {"numGenerations": 2, "maxCompletionLength": 12},
        "training": {
            "maxSteps": 2,
            "perDeviceBatchSize": 2,
            "gradientAccumulationSteps": 1,
            "saveSteps": 2,
            "learningRate": 1e-2,
            "precision": "fp32",
        },
    }
    for key, value in overrides.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and key in data else value
    return TrainerConfig.model_validate(data)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def moved(before: Mapping[str, torch.Tensor], model: torch.nn.Module) -> set[str]:
    after = dict(model.named_parameters())
    return {name for name, tensor in before.items() if not torch.equal(tensor, after[name].detach())}


def run_steps(cfg: TrainerConfig, out: Path, **options: Any) -> tuple[Any, set[str], set[str]]:
    """Train; return the trainer and which parameter names moved (vision / other)."""
    trainer, _, _ = build_grpo_trainer(cfg, RunOptions(output_dir=out, **options))
    model = trainer.model
    before = snapshot(model)
    trainer.train()
    changed = moved(before, model)
    family_vision = [n for n in changed if ".visual." in f".{n}." or "vision_tower" in n]
    return trainer, set(family_vision), changed - set(family_vision)


def test_full_finetuning_moves_vision_and_language(tmp_path: Path) -> None:
    trainer, vision, language = run_steps(config(), tmp_path)
    assert trainer.state.global_step == 2
    assert language, "no language-model weight moved: the reward had no effect"
    assert vision, "full fine-tuning must train the vision tower too"


def test_freeze_vision_keeps_the_vision_tower(tmp_path: Path) -> None:
    _, vision, language = run_steps(config(finetuning={"mode": "freezeVision"}), tmp_path)
    assert language
    assert vision == set()


def test_lora_trains_only_language_model_adapters(tmp_path: Path) -> None:
    trainer, vision, language = run_steps(config(finetuning={"mode": "lora", "lora": {"r": 4, "alpha": 8}}), tmp_path)
    assert vision == set()
    assert language and all("lora_" in name for name in language), language
    assert not any("visual" in n and "lora_" in n for n, _ in trainer.model.named_parameters())


def test_internvl_trains(tmp_path: Path) -> None:
    trainer, _, language = run_steps(config(model={"uri": "builtin://tiny-internvl"}), tmp_path)
    assert trainer.state.global_step == 2
    assert language


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    """A GUI-style dataset: each sample has a before and an after screenshot."""
    images = tmp_path / "images"
    images.mkdir()
    lines = []
    for i in range(4):
        for tag, colour in (("a", (200, 30, 30)), ("b", (30, 30, 200 - 20 * i))):
            Image.new("RGB", (56, 56), colour).save(images / f"{i}{tag}.png")
        lines.append(
            {
                "image": [f"{i}a.png", f"{i}b.png"],
                "conversations": [
                    {"from": "human", "value": "<image><image>Which defect does the second screenshot show?"},
                    {"from": "gpt", "value": "colour"},
                ],
            }
        )
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.mark.parametrize("uri", ["builtin://tiny-qwen2.5-vl", "builtin://tiny-internvl"])
def test_multi_image_samples(tmp_path: Path, pairs: Path, uri: str) -> None:
    cfg = config(
        model={"uri": uri},
        task="gui",
        datasets=[{"jsonl": str(pairs), "imageRoot": str(pairs.parent / "images")}],
        rewards=[{"name": "test_char_variety"}, {"name": "all_match"}],
    )
    trainer, _, language = run_steps(cfg, tmp_path / "out")
    assert trainer.state.global_step == 2
    assert language


class CrashAt(TrainerCallback):
    """Dies at a step, like a node lost mid-run."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.global_step == self.step:
            raise RuntimeError(f"injected crash at step {self.step}")
        return control


class StepCounter(TrainerCallback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self.steps.append(int(state.global_step))
        return control


def test_crash_after_checkpoint_then_resume(tmp_path: Path) -> None:
    cfg = config(training={"maxSteps": 4, "saveSteps": 2})
    with pytest.raises(RuntimeError, match="injected crash at step 3"):
        train(cfg, RunOptions(output_dir=tmp_path, callbacks=[CrashAt(3)]))
    newest = find_resumable(tmp_path / CHECKPOINTS)
    assert newest is not None and newest.step == 2
    counter = StepCounter()
    result = train(cfg, RunOptions(output_dir=tmp_path, callbacks=[counter]))
    assert result.resumed_from is not None and result.resumed_from.step == 2
    assert result.steps == 4
    assert counter.steps == [3, 4], "the resumed run must continue at step 3, not start over"
    assert [c.step for c in result.checkpoints] == [4]
    final = verify_checkpoint(tmp_path / CHECKPOINTS / "checkpoint-4")
    assert final.ok
    manifest = json.loads((tmp_path / CHECKPOINTS / "checkpoint-4" / "manifest.json").read_text())
    assert TrainerConfig.model_validate(manifest["config"]) == cfg
    # The log history of the first run is restored, so the reward curve is whole.
    assert [e["step"] for e in result.log_history if "reward" in e] == [1, 2, 3, 4]


def test_a_resumed_run_keeps_the_original_reference_model(tmp_path: Path) -> None:
    # The KL term anchors the policy to the model the job started from; a gang restart that
    # resumed from a checkpoint must not silently move that anchor to the checkpoint.
    cfg = config(grpo={"beta": 0.04})
    train(cfg, RunOptions(output_dir=tmp_path))
    checkpoint = tmp_path / CHECKPOINTS / "checkpoint-2"
    trainer, _, _ = build_grpo_trainer(cfg, RunOptions(output_dir=tmp_path / "resumed"), resume_from=checkpoint)
    base, _, _ = build_grpo_trainer(cfg, RunOptions(output_dir=tmp_path / "fresh"))
    assert trainer.ref_model is not None
    reference = dict(trainer.ref_model.named_parameters())
    original = dict(base.model.named_parameters())
    assert all(torch.equal(reference[n], original[n]) for n in original)
    policy = dict(trainer.model.named_parameters())
    assert any(not torch.equal(policy[n], original[n]) for n in original), "the policy resumes the trained weights"


def test_corrupted_checkpoint_is_skipped_on_resume(tmp_path: Path) -> None:
    cfg = config(training={"maxSteps": 4, "saveSteps": 2})
    train(cfg, RunOptions(output_dir=tmp_path))
    newest = tmp_path / CHECKPOINTS / "checkpoint-4"
    weights = next(p for p in newest.iterdir() if p.suffix == ".safetensors")
    weights.write_bytes(weights.read_bytes()[:-8] + b"tampered")
    assert not verify_checkpoint(newest).ok
    resumable = find_resumable(tmp_path / CHECKPOINTS)
    assert resumable is not None and resumable.step == 2
    result = train(config(training={"maxSteps": 5, "saveSteps": 2}), RunOptions(output_dir=tmp_path))
    assert result.resumed_from is not None and result.resumed_from.step == 2


def test_keep_prunes_old_checkpoints(tmp_path: Path) -> None:
    cfg = config(training={"maxSteps": 4, "saveSteps": 1}, checkpoint={"keep": 2})
    result = train(cfg, RunOptions(output_dir=tmp_path))
    left = {p.name for p in (tmp_path / CHECKPOINTS).iterdir()}
    assert len(result.checkpoints) == 4
    best = max(result.checkpoints, key=lambda c: (c.metrics["reward"], c.step))
    assert left == {"checkpoint-3", "checkpoint-4", f"checkpoint-{best.step}"}, "newest two, and never the best"


@pytest.mark.parametrize(("nnodes", "nproc"), [(2, 1), (1, 2)], ids=["two-nodes", "torchrun-two-processes"])
def test_vlmr1_run_two_ranks(tmp_path: Path, nnodes: int, nproc: int) -> None:
    """Two ranks with the pods' contract (gloo): two node processes, or one node whose entry
    point hands its two processes to torchrun (what a pod with processesPerNode 2 does)."""
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "vlmr1_cli", "run", str(REPO / "examples" / "grpojob-rec-local.yaml"),
         "--output", str(out), "--nnodes", str(nnodes), "--nproc-per-node", str(nproc), "--max-steps", "2"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    node1 = out / "logs" / "node-1.log"
    rank1_log = (node1.read_text() if node1.exists() else "") if nnodes == 2 else proc.stderr
    assert proc.returncode == 0, proc.stderr[-3000:] + ("\nnode 1:\n" + rank1_log[-2000:] if nnodes == 2 else "")
    assert "rank 0/2 finished at step 2" in proc.stderr
    assert "rank 1/2 finished at step 2" in rank1_log
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["checkpoint-2"]
    assert verify_checkpoint(out / "checkpoints" / "checkpoint-2").ok
    assert "checkpoint:  step 2" in proc.stdout


def test_vlmr1_run_in_process_writes_metrics(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "vlmr1_cli", "run", str(REPO / "examples" / "grpojob-rec-local.yaml"),
         "--output", str(out), "--max-steps", "2"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "progress"] == [1, 2]
    (checkpoint,) = [e for e in events if e["event"] == "checkpoint"]
    assert checkpoint["digest"] == verify_checkpoint(out / "checkpoints" / "checkpoint-2").digest
    # The example's evaluation section scored the checkpoint on the 16 validation samples.
    assert checkpoint["metrics"]["eval/rec-shapes-val/samples"] == 16
    assert "eval/rec-shapes-val/rec_acc=" in proc.stdout
    assert "reward:" in proc.stdout and "48 samples loaded" in proc.stdout
    assert "step 2/2" in proc.stderr


def test_bad_local_world_is_a_clear_error(tmp_path: Path) -> None:
    job = (REPO / "examples" / "grpojob-rec-local.yaml").read_text().replace("numGenerations: 4", "numGenerations: 3")
    path = tmp_path / "job.yaml"
    path.write_text(job)
    shutil.copytree(REPO / "examples" / "data", tmp_path / "data")
    proc = subprocess.run(
        [sys.executable, "-m", "vlmr1_cli", "run", str(path), "--output", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "numGenerations" in proc.stderr


def test_recorded_checkpoint_uris_name_the_folders_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The uri in status and manifests, resolved where the claim is mounted, is the checkpoint folder."""
    from vlmr1_core.uri import resolve_local_path
    from vlmr1_trainer.worker import checkpoint_base_uri, output_dir

    monkeypatch.setenv("VLMR1_PVC_ROOT", str(tmp_path))
    cfg = config(checkpoint={"uri": "pvc://ckpt/runs/rec"})
    result = train(cfg, RunOptions(output_dir=output_dir(cfg, None), checkpoint_uri=checkpoint_base_uri(cfg)))
    (info,) = result.checkpoints
    assert info.uri == "pvc://ckpt/runs/rec/checkpoints/checkpoint-2"
    folder = tmp_path / "ckpt" / "runs" / "rec" / CHECKPOINTS / "checkpoint-2"
    assert resolve_local_path(info.uri) == info.path == folder
    assert config().checkpoint.uri is None and checkpoint_base_uri(config()) is None
