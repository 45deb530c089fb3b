"""Steps per second of the vlmr1 trainer vs a bare TRL GRPOTrainer, side by side.

Both train the builtin tiny Qwen2.5-VL on the shipped rec-shapes data with the same
rewards (rec_iou + rec_format), GRPO settings and seed. "Bare" is TRL as its
documentation shows it: eager rows in a datasets.Dataset, the reward callables, a
GRPOConfig with the same values, no callbacks (and no log printing, as vlmr1). "vlmr1" is build_grpo_trainer from a
TrainerConfig: lazy image loading with the family's row hook, the checkpoint layer and
progress reporting (metrics.jsonl, gauges). A step is timed from one step's start to the
next (so logging and callbacks count), the first steps are warm-up, runs alternate.

    .venv/bin/python bench/train_step.py [--steps 12] [--rounds 3]

Target: vlmr1's overhead under 5% (ratio of median step times < 1.05).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHAPES = REPO / "examples" / "data" / "rec-shapes"
WARMUP = 2


def config(steps: int) -> Any:
    from vlmr1_core.config import TrainerConfig

    return TrainerConfig.model_validate(
        {
            "model": {"uri": "builtin://tiny-qwen2.5-vl"},
            "task": "rec",
            "datasets": [{"jsonl": str(SHAPES / "train.jsonl"), "imageRoot": str(SHAPES / "images")}],
            "rewards": [{"name": "rec_iou"}, {"name": "rec_format"}],
            "grpo": {"numGenerations": 4, "maxCompletionLength": 24},
            "training": {
                "maxSteps": steps,
                "perDeviceBatchSize": 4,
                "gradientAccumulationSteps": 1,
                "learningRate": 1e-4,
                "precision": "fp32",
                # No intermediate saves in either trainer (the last save is after the timed steps).
                "saveSteps": 10_000,
            },
        }
    )


def step_clock() -> Any:
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.starts: list[float] = []

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            self.starts.append(time.perf_counter())
            return control

        def step_times(self) -> list[float]:
            return [b - a for a, b in zip(self.starts[WARMUP:], self.starts[WARMUP + 1 :], strict=False)]

    return StepClock()


def run_vlmr1(steps: int, out: Path) -> list[float]:
    from vlmr1_trainer.progress import ProgressCallback
    from vlmr1_trainer.train import RunOptions, build_grpo_trainer

    clock = step_clock()
    progress = ProgressCallback(out)
    options = RunOptions(output_dir=out, callbacks=[progress, clock], on_checkpoint=progress.report_checkpoint)
    trainer, _, _ = build_grpo_trainer(config(steps), options)
    trainer.train()
    progress.close()
    times: list[float] = clock.step_times()
    return times


def run_bare(steps: int, out: Path) -> list[float]:
    import torch
    from datasets import Dataset  # type: ignore[import-untyped]
    from transformers import AutoProcessor, PrinterCallback, Qwen2_5_VLForConditionalGeneration
    from trl.trainer.grpo_config import GRPOConfig
    from trl.trainer.grpo_trainer import GRPOTrainer

    import vlmr1_core.processors  # noqa: F401 (the builtin processor class)
    from vlmr1_trainer.data import load_samples, open_image, parse_sources
    from vlmr1_trainer.rewards import build
    from vlmr1_trainer.vlm.builtin import ensure_builtin
    from vlmr1_trainer.vlm.prompts import REC_TEMPLATE, build_prompt

    path = ensure_builtin("tiny-qwen2.5-vl")
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(path)  # type: ignore[no-untyped-call]
    samples, _ = load_samples(parse_sources(str(SHAPES / "train.jsonl"), str(SHAPES / "images")), "error")
    rows = [
        {
            "prompt": build_prompt(REC_TEMPLATE, s.problem, 1),
            "image": open_image(s.image_paths[0]),
            "solution": s.solution,
        }
        for s in samples
    ]
    cfg = config(steps)
    args = GRPOConfig(
        output_dir=str(out),
        num_generations=cfg.grpo.num_generations,
        max_completion_length=cfg.grpo.max_completion_length,
        beta=cfg.grpo.beta,
        epsilon=cfg.grpo.epsilon,
        loss_type=cfg.grpo.loss_type,
        temperature=cfg.grpo.temperature,
        learning_rate=cfg.training.learning_rate,
        max_steps=steps,
        per_device_train_batch_size=cfg.training.per_device_batch_size,
        gradient_accumulation_steps=1,
        seed=cfg.training.seed,
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
        bf16=False,
        report_to=[],
        disable_tqdm=True,
    )
    clock = step_clock()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[build("rec_iou"), build("rec_format")],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=processor,
        callbacks=[clock],
    )
    # Same console as vlmr1 (which reports through its own callbacks): no per-step log printing.
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    times: list[float] = clock.step_times()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()
    import logging

    logging.disable(logging.WARNING)
    times: dict[str, list[float]] = {"bare TRL": [], "vlmr1": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(opts.rounds):
            # Alternate so drift in machine load hits both sides alike.
            times["bare TRL"] += run_bare(opts.steps, Path(tmp) / f"bare-{i}")
            times["vlmr1"] += run_vlmr1(opts.steps, Path(tmp) / f"ours-{i}")
    print(f"{'trainer':<10} {'steps':>6} {'median s/step':>14} {'steps/s':>8}")
    medians = {}
    for name, values in times.items():
        medians[name] = statistics.median(values)
        print(f"{name:<10} {len(values):>6} {medians[name]:>14.4f} {1 / medians[name]:>8.2f}")
    ratio = medians["vlmr1"] / medians["bare TRL"]
    print(f"\nvlmr1 / bare TRL step time: {ratio:.3f} ({(ratio - 1) * 100:+.1f}% overhead; target < +5%)")


if __name__ == "__main__":
    main()
