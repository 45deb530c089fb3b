"""``method: sft``: supervised fine-tuning on TRL's SFTTrainer, with everything else GRPO has.

The same spec, data, model families, fine-tuning modes, checkpoints (manifests, digests,
evaluation, pruning, resume), progress reporting and pod contract as GRPO; only the trainer
differs. Each sample's prompt is built exactly as GRPO builds it (the family's chat template
over the task's question template), and its target is the sample's whole gpt turn
(:class:`~vlmr1_trainer.supervised.SupervisedCollator`), so an SFT checkpoint answers the
prompts a GRPOJob starting from it will ask.

TRL's own dataset preparation is skipped (``skip_prepare_dataset``): rows stay lazy (images
decoded per batch) and our collator tokenises them; nothing is truncated, since a cut through
image tokens breaks a multimodal prompt (``grpo.maxPromptLength`` is still enforced per sample).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlmr1_core.config import TrainerConfig
from vlmr1_trainer.data import LoadReport, Sample

if TYPE_CHECKING:
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    from vlmr1_trainer.train import CheckpointCallback, FamilyRowHook, RunOptions


class TargetRowHook:
    """The GRPO row hook plus the ``target`` column (preflight has made sure none is empty).

    A class, not a closure, so the dataset stays picklable for dataloader workers.
    """

    def __init__(self, family_hook: FamilyRowHook) -> None:
        self.family_hook = family_hook

    def __call__(self, sample: Sample, images: list[Any], row: dict[str, Any]) -> dict[str, Any]:
        target = self.family_hook.family.sft_target(sample.target)
        return {**self.family_hook(sample, images, row), "target": target}


def sft_args(config: TrainerConfig, options: RunOptions) -> SFTConfig:
    """TRL's SFTConfig: the training fields GRPO maps too, and SFT's own settings."""
    from trl.trainer.sft_config import SFTConfig

    from vlmr1_trainer.train import training_kwargs

    return SFTConfig(
        **training_kwargs(config, options),
        dataset_kwargs={"skip_prepare_dataset": True},
        max_length=None,
        packing=False,
    )


def build_sft_trainer(
    config: TrainerConfig, options: RunOptions, resume_from: Path | None = None
) -> tuple[SFTTrainer, CheckpointCallback, LoadReport]:
    """An SFTTrainer for the spec, checked and loaded as :func:`vlmr1_trainer.train.build_trainer` does."""
    from vlmr1_trainer.data import to_hf_dataset
    from vlmr1_trainer.supervised import SupervisedCollator
    from vlmr1_trainer.train import CheckpointCallback, FamilyRowHook, load_policy_model, sft_trainer_class

    loaded, inputs, peft_config = load_policy_model(config, options, resume_from)
    dataset = inputs.dataset
    dataset.row_hook = TargetRowHook(FamilyRowHook(loaded.family, loaded.processor, config.grpo.max_prompt_length))
    checkpoints = CheckpointCallback(config, options)
    trainer = sft_trainer_class()(
        model=loaded.model,
        args=sft_args(config, options),
        data_collator=SupervisedCollator(loaded.processor),
        train_dataset=to_hf_dataset(dataset),
        processing_class=loaded.processor,
        peft_config=peft_config,
        callbacks=[checkpoints.as_callback(), *options.callbacks],
    )
    return trainer, checkpoints, dataset.report
