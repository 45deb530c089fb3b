"""The family registry: ``get_family(name)`` and ``register_family`` for a new one.

Entries are ``"module:Class"`` strings resolved on first use, so listing or validating
families imports no family module (and none of them imports torch at module level).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlmr1_trainer.vlm.base import VLMFamily

if TYPE_CHECKING:
    from transformers import PreTrainedModel, ProcessorMixin

    from vlmr1_core.config import ModelSpec
    from vlmr1_core.uri import Downloader
    from vlmr1_trainer.storage import ModelSource

__all__ = ["LoadedVLM", "UnknownFamilyError", "family_names", "get_family", "load_vlm", "register_family"]

FamilyFactory = Callable[[], VLMFamily]

_FAMILIES: dict[str, str | FamilyFactory] = {
    "qwen2.5-vl": "vlmr1_trainer.vlm.qwen2_5_vl:Qwen2_5_VLFamily",
    "qwen3-vl": "vlmr1_trainer.vlm.qwen3_vl:Qwen3VLFamily",
    "qwen3.5": "vlmr1_trainer.vlm.qwen3_5:Qwen3_5Family",
    "glm4.1v": "vlmr1_trainer.vlm.glm4v:Glm4vFamily",
    "internvl": "vlmr1_trainer.vlm.internvl:InternVLFamily",
}


class UnknownFamilyError(KeyError):
    """A family name nobody registered; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


def register_family(name: str, factory: str | FamilyFactory, *, replace: bool = False) -> None:
    """Register a family under ``name``: a zero-argument factory or a ``"module:Class"`` path."""
    if name in _FAMILIES and not replace:
        raise ValueError(f"model family {name!r} is already registered")
    _FAMILIES[name] = factory


def family_names() -> list[str]:
    """Registered family names, sorted."""
    return sorted(_FAMILIES)


def get_family(name: str) -> VLMFamily:
    """A fresh instance of the family ``name`` (with its default box convention)."""
    try:
        entry = _FAMILIES[name]
    except KeyError:
        raise UnknownFamilyError(f"unknown model family {name!r}; known: {', '.join(family_names())}") from None
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        factory: FamilyFactory = getattr(importlib.import_module(module), attr)
    else:
        factory = entry
    family = factory()
    if not isinstance(family, VLMFamily):
        raise TypeError(f"model family {name!r} produced {type(family).__name__}, not a VLMFamily")
    return family


@dataclass
class LoadedVLM:
    """A model, its processor and the family that knows how to prompt and train it."""

    family: VLMFamily
    model: PreTrainedModel
    processor: ProcessorMixin
    source: ModelSource


def load_vlm(
    spec: ModelSpec,
    *,
    dtype: Any = None,
    downloader: Downloader | None = None,
    weights: str | None = None,
    **model_kwargs: Any,
) -> LoadedVLM:
    """Resolve ``spec.uri`` once and load model and processor through the spec's family.

    A LoRA checkpoint is loaded as its base with the adapter merged (:mod:`.adapters`).
    ``weights`` (a resumed full checkpoint's folder) replaces the weights only: the processor
    and the model's recorded origin stay the spec's model, from which TRL builds the
    reference model, so a restart keeps the KL anchor the job started with.
    """
    from vlmr1_trainer.storage import ModelSource, resolve_model
    from vlmr1_trainer.vlm.adapters import is_adapter_checkpoint, merged_checkpoint

    family = get_family(spec.resolved_family)
    source = resolve_model(spec.uri, spec.revision, downloader=downloader)
    if source.kind not in ("hub", "builtin") and is_adapter_checkpoint(Path(source.pretrained)):
        merged = merged_checkpoint(Path(source.pretrained))
        source = ModelSource(uri=source.uri, pretrained=str(merged), kind=source.kind)
    model = family.load_model(
        weights or source, dtype=dtype, attn_implementation=spec.attn_implementation, **model_kwargs
    )
    if weights is not None:
        model.config._name_or_path = source.pretrained
    processor = family.load_processor(source, min_pixels=spec.min_pixels, max_pixels=spec.max_pixels)
    return LoadedVLM(family=family, model=model, processor=processor, source=source)
