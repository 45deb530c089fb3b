"""A LoRA checkpoint as a starting model: merged into its base once, cached by its digest.

A LoRA checkpoint holds adapter weights only; its manifest records the TrainerConfig that made
it, and so its base model. To start a job from it (an SFT warm start with ``mode: lora``, say),
the adapter is merged into that base exactly as ``vlmr1 eval`` merges it, and the merged model
and its processor are saved under ``<cache>/merged/<digest>``. Loading from that folder (rather
than merging in memory) matters for GRPO: TRL builds the reference model from the policy's
folder, so the KL anchor is the merged start, not the bare base.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from vlmr1_core.errors import UserError

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_checkpoint(path: Path) -> bool:
    return (path / ADAPTER_CONFIG).is_file()


def merged_checkpoint(path: Path, *, cache_root: Path | None = None) -> Path:
    """The full model folder of the LoRA checkpoint at ``path`` (merged on first use)."""
    from vlmr1_core.checkpoints import verify_checkpoint
    from vlmr1_core.uri import cache_dir
    from vlmr1_trainer.evaluation.policy import checkpoint_config, load_files

    config = checkpoint_config(path)
    if config is None:
        raise UserError(
            f"{path} is a LoRA adapter without a vlmr1 manifest, so its base model is unknown",
            field="spec.model.uri",
            fix="start from a vlmr1 checkpoint (its manifest names the base), or merge the adapter into its base first",
        )
    result = verify_checkpoint(path)
    if not result.ok or result.digest is None:
        raise UserError(
            f"the LoRA checkpoint {path} does not verify against its manifest: {'; '.join(result.problems())}",
            field="spec.model.uri",
            fix="restore the checkpoint's files, or start from another checkpoint",
        )
    dest = (cache_root or cache_dir()) / "merged" / result.digest.removeprefix("sha256:")
    if (dest / "config.json").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.merging-", dir=dest.parent))
    try:
        policy = load_files(path, config.model, device="cpu")
        policy.model.save_pretrained(staging)
        policy.processor.save_pretrained(staging)
        try:
            staging.rename(dest)
        except OSError:
            if not (dest / "config.json").is_file():  # else another rank merged it first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest
