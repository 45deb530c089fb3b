"""GLM-4.1V (``Glm4vForConditionalGeneration``: GLM-4.1V-9B-Base and -Thinking).

Module tree (transformers 5): ``model.visual`` is the vision tower, including what projects
it into the language model (``downsample``, a 2x2 conv merging patches, and ``merger``, the
MLP projector), so ``freezeVision`` freezes the whole path up to the language model, as for
Qwen2.5-VL; ``model.language_model`` is the GLM-4 decoder and ``lm_head`` sits beside it.

LoRA: the decoder's attention is ``q_proj``/``k_proj``/``v_proj``/``o_proj`` as in Qwen, but
its MLP fuses the gate and up projections into one ``gate_up_proj`` (then ``down_proj``).
The default suffixes ``gate_proj``/``up_proj`` name nothing in GLM's decoder (only in its
vision tower), so this family maps them onto ``gate_up_proj``: the default LoRA spec then
adapts every linear layer of every decoder block, as it does for Qwen.

Images are resized like Qwen2.5-VL's (sides multiples of 28 = 14-pixel patches merged 2x2),
but GLM's resize counts an image as two temporal frames: its ``size.shortest_edge``/
``longest_edge`` bound ``2 x H x W``. ``model.minPixels``/``maxPixels`` (pixels of one
image) are therefore stored doubled, so the resized area stays within them.

Boxes: GLM-V grounds objects in coordinates normalized to 0..1000 of the image sides
(``x = round(x_pixel / W * 1000)``), answered as ``<|begin_of_box|>[x1, y1, x2, y2]<|end_of_box|>``
inside its ``<answer>`` block. The default convention is therefore ``NORMALIZED_1000``:
samples get ``image_size`` = ``[W, H]`` and ``input_size`` = ``[1000, 1000]``, and
``rec_iou`` rescales to original pixels. Whether the markers survive decoding (TRL decodes
with ``skip_special_tokens``; the builtin's markers are special tokens and vanish) does not
matter: ``rec_iou`` reads the first ``[x1, y1, x2, y2]`` literal of the ``<answer>`` block.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from vlmr1_core.config import ModelFamily
from vlmr1_trainer.vlm.base import VLMFamily
from vlmr1_trainer.vlm.boxes import NORMALIZED_1000, BoxConvention, Size

__all__ = ["Glm4vFamily"]


class Glm4vFamily(VLMFamily):
    """GLM-4.1V: boxes normalized to 0..1000, a fused ``gate_up_proj`` MLP, area-bounded images."""

    name: ClassVar[ModelFamily] = "glm4.1v"
    model_class_name: ClassVar[str] = "Glm4vForConditionalGeneration"
    # downsample and merger (vision -> text projector) live under model.visual and are frozen with it.
    vision_modules: ClassVar[tuple[str, ...]] = ("model.visual",)
    language_model_module: ClassVar[str] = "model.language_model"
    builtin_models: ClassVar[tuple[str, ...]] = ("tiny-glm4.1v",)
    default_box_convention: ClassVar[BoxConvention] = NORMALIZED_1000

    lora_module_aliases: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "gate_proj": ("gate_up_proj",),
        "up_proj": ("gate_up_proj",),
    }
    """LoRA suffixes of other families -> GLM's decoder modules that do their work."""

    def lora_target_modules(self, suffixes: Iterable[str]) -> str:
        """The base regex over GLM's decoder names: ``gate_proj``/``up_proj`` become ``gate_up_proj``."""
        mapped: list[str] = []
        for suffix in suffixes:
            mapped.extend(self.lora_module_aliases.get(suffix.strip("."), (suffix,)))
        return super().lora_target_modules(mapped)

    @staticmethod
    def _temporal_factor(image_processor: Any) -> int:
        return int(getattr(image_processor, "temporal_patch_size", 2) or 2)

    def set_pixel_bounds(self, processor: Any, min_pixels: int | None, max_pixels: int | None) -> None:
        """Bound the resized image area to ``min_pixels``..``max_pixels`` (GLM's size keys count
        ``temporal_patch_size`` frames of it, so the values are stored multiplied by that)."""
        image_processor = processor.image_processor
        factor = self._temporal_factor(image_processor)
        bounds = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
        bounds = {key: value * factor for key, value in bounds.items() if value is not None}
        if not bounds:
            return
        size = image_processor.size
        image_processor.size = {**size, **bounds} if isinstance(size, dict) else dataclasses.replace(size, **bounds)

    def model_input_size(self, image_size: Size, processor: Any) -> Size:
        """``(14*grid_w, 14*grid_h)`` for an image of ``(W, H)``: GLM's own smart resize.

        Not needed by the default (normalized) convention; used with ``MODEL_INPUT_PIXELS``.
        """
        from transformers.models.glm4v.image_processing_pil_glm4v import smart_resize

        image_processor = processor.image_processor
        size = image_processor.size
        min_pixels = size["shortest_edge"] if isinstance(size, dict) else size.shortest_edge
        max_pixels = size["longest_edge"] if isinstance(size, dict) else size.longest_edge
        temporal = self._temporal_factor(image_processor)
        factor = int(image_processor.patch_size) * int(image_processor.merge_size)
        width, height = image_size
        resized_h, resized_w = smart_resize(
            num_frames=temporal,
            height=int(height),
            width=int(width),
            temporal_factor=temporal,
            factor=factor,
            min_pixels=int(min_pixels),
            max_pixels=int(max_pixels),
        )
        return (int(resized_w), int(resized_h))
