"""What `vlmr1 eval` evaluates: a vlmr1 checkpoint (full or LoRA) or any model uri.

A checkpoint folder carries its TrainerConfig in ``manifest.json``; the processor is loaded
from that config's model with its pixel bounds, exactly as training saw images, and a LoRA
checkpoint (``adapter_config.json``) is applied to its base model and merged. A uri
without a manifest (``hf://org/name``, ``builtin://...``, a model folder) is evaluated as it
is: the baseline a trained checkpoint should beat.

:func:`load_reference` is the same without the weights: what a served model or a file of
saved predictions is scored as (its family's box convention and REC script, its processor
for the model-input size Qwen2.5-VL boxes are in, its digest for the record).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlmr1_core.checkpoints import MANIFEST, verify_checkpoint
from vlmr1_core.config import ModelSpec, TrainerConfig, detect_family
from vlmr1_core.errors import UserError
from vlmr1_trainer.vlm.adapters import ADAPTER_CONFIG

if TYPE_CHECKING:
    from vlmr1_trainer.vlm import VLMFamily


class PolicyError(UserError, ValueError):
    """A checkpoint or model that cannot be evaluated (not verifiable, unknown family)."""


@dataclass
class Policy:
    """A loaded model ready to generate, and what it is."""

    family: VLMFamily
    model: Any
    """None for a reference (:func:`load_reference`): predictions come from elsewhere."""
    processor: Any
    """None for a reference given only a family."""
    uri: str
    digest: str | None = None
    """The checkpoint's digest (None for a plain model uri)."""
    step: int | None = None
    config: TrainerConfig | None = None
    """The TrainerConfig that produced the checkpoint (None for a plain model uri)."""


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _dtype(device: str) -> Any:
    import torch

    # bf16 where accelerators run it natively; fp32 on CPU, where bf16 matmuls are slow.
    return torch.float32 if device == "cpu" else torch.bfloat16


def checkpoint_config(path: Path) -> TrainerConfig | None:
    """The TrainerConfig recorded in a checkpoint's manifest, or None without a manifest."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        return None
    config = json.loads(manifest_path.read_text(encoding="utf-8")).get("config")
    if not isinstance(config, dict):
        raise PolicyError(f"{manifest_path} records no training config; evaluate it as a model uri instead")
    return TrainerConfig.model_validate(config)


def load_files(path: Path, model: ModelSpec, *, device: str | None = None, family_name: str | None = None) -> Policy:
    """Load a checkpoint's files, whose base model is ``model`` (the trainer calls this on a
    checkpoint before its manifest exists). The processor comes from ``model`` with its pixel
    bounds, as in training; a LoRA checkpoint is merged into its base."""
    from vlmr1_trainer.storage import resolve_model
    from vlmr1_trainer.vlm import get_family

    device = device or default_device()
    family = get_family(family_name or model.resolved_family)
    base = resolve_model(model.uri, model.revision)
    processor = family.load_processor(base, min_pixels=model.min_pixels, max_pixels=model.max_pixels)
    dtype = _dtype(device)
    loaded: Any
    if (path / ADAPTER_CONFIG).is_file():
        from peft import PeftModel

        loaded = family.load_model(base, dtype=dtype, attn_implementation=model.attn_implementation)
        loaded = PeftModel.from_pretrained(loaded, str(path)).merge_and_unload()
    else:
        loaded = family.load_model(str(path), dtype=dtype, attn_implementation=model.attn_implementation)
    return Policy(family=family, model=loaded.to(device), processor=processor, uri=str(path))


@dataclass
class _Located:
    """Where a target's files are and, for a vlmr1 checkpoint, its config and verified identity."""

    path: Path | None
    config: TrainerConfig | None
    digest: str | None = None
    step: int | None = None


def _locate(target: str, *, verify: bool) -> _Located:
    """Resolve a checkpoint folder or pvc://, s3:// uri to local files (other uris stay remote),
    and verify a vlmr1 checkpoint against its manifest unless ``verify`` is false."""
    from vlmr1_core.uri import StorageError, resolve_local_path

    path: Path | None = None
    if target.startswith(("pvc://", "s3://")) or Path(target).is_dir():
        try:
            path = resolve_local_path(target)
        except StorageError as exc:
            raise PolicyError(str(exc)) from exc
    located = _Located(path, checkpoint_config(path) if path is not None else None)
    if located.config is not None and verify:
        assert path is not None
        result = verify_checkpoint(path)
        if not result.ok:
            raise PolicyError(
                f"{target} does not verify against its manifest: {'; '.join(result.problems())} "
                "(a tampered or incomplete checkpoint; pass --no-verify to use it anyway)"
            )
        located.digest, located.step = result.digest, result.step
    return located


def _family_of(target: str, family: str | None) -> str:
    """The family named, else the one a model uri's name tells."""
    name = family or detect_family(target)
    if name is None:
        raise PolicyError(
            f"cannot tell the model family of {target}; pass --family "
            "(qwen2.5-vl, qwen3-vl, qwen3.5, glm4.1v or internvl)"
        )
    return name


def load_policy(target: str, *, family: str | None = None, device: str | None = None, verify: bool = True) -> Policy:
    """A checkpoint folder (verified against its manifest unless ``verify`` is false) or a model uri."""
    located = _locate(target, verify=verify)
    path, config = located.path, located.config
    if path is not None and config is not None:
        policy = load_files(path, config.model, device=device, family_name=family)
        policy.uri, policy.digest, policy.step, policy.config = target, located.digest, located.step, config
        return policy
    spec = ModelSpec.model_validate({"uri": target, "family": _family_of(target, family)})
    if path is not None:  # a plain model folder
        policy = load_files(path, spec, device=device)
    else:
        from vlmr1_trainer.vlm import load_vlm

        device = device or default_device()
        vlm = load_vlm(spec, dtype=_dtype(device))
        model: Any = vlm.model
        policy = Policy(family=vlm.family, model=model.to(device), processor=vlm.processor, uri=target)
    policy.uri = target
    return policy


def load_reference(
    target: str | None, *, family: str | None = None, verify: bool = True, need_processor: bool = False
) -> Policy:
    """What produced predictions made elsewhere (an endpoint, a file): a checkpoint folder
    (verified, its training config's processor and pixel bounds, its digest), a model uri (its
    processor), or only ``family``. No weights are loaded. ``need_processor``: the family's
    boxes are in model-input pixels and REC is scored, so a processor must give each image's
    input size; only ``family`` is then an error saying what to pass.
    """
    from vlmr1_trainer.vlm import get_family

    if target is None:
        if family is None:
            raise PolicyError("without --checkpoint, pass --family: it says how the predictions write boxes")
        chosen = get_family(family)
        if need_processor and chosen.box_convention.kind == "model_input_pixels":
            raise PolicyError(
                f"{family} answers boxes in model-input pixels; to map them to the image, pass --checkpoint "
                "with the checkpoint or model uri that made the predictions (only its processor is loaded)"
            )
        return Policy(family=chosen, model=None, processor=None, uri="")
    located = _locate(target, verify=verify)
    config = located.config
    if config is not None:
        spec = config.model
        name = family or spec.resolved_family
    else:
        name = _family_of(target, family)
        spec = ModelSpec.model_validate({"uri": target, "family": name})
    chosen = get_family(name)
    processor = chosen.load_processor(spec.uri, revision=spec.revision, min_pixels=spec.min_pixels,
                                      max_pixels=spec.max_pixels)  # fmt: skip
    return Policy(family=chosen, model=None, processor=processor, uri=target, digest=located.digest, step=located.step,
                  config=config)  # fmt: skip
