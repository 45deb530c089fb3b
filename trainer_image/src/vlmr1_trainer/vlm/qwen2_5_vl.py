"""Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``).

Images are resized so both sides are multiples of 28 (14-pixel patches, merged 2x2)
within ``minPixels``..``maxPixels``, and Qwen2.5-VL answers boxes in pixels of that
resized input. VLM-R1 maps them back with ``image_size`` (original ``[W, H]``) and
``input_size`` (``[14*grid_w, 14*grid_h]``); this family computes ``input_size`` with
the processor's own resize rule, so it equals what ``image_grid_thw`` reports.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from vlmr1_core.config import ModelFamily
from vlmr1_trainer.vlm.base import VLMFamily
from vlmr1_trainer.vlm.boxes import MODEL_INPUT_PIXELS, BoxConvention, Size

__all__ = ["Qwen2_5_VLFamily"]


class Qwen2_5_VLFamily(VLMFamily):  # noqa: N801 (the model's own spelling)
    """Qwen2.5-VL: boxes in model-input pixels, rescaled to the original image by the rewards."""

    name: ClassVar[ModelFamily] = "qwen2.5-vl"
    model_class_name: ClassVar[str] = "Qwen2_5_VLForConditionalGeneration"
    # The merger (vision -> text projector) lives under model.visual and is frozen with it,
    # as VLM-R1's "visual" keyword does.
    vision_modules: ClassVar[tuple[str, ...]] = ("model.visual",)
    language_model_module: ClassVar[str] = "model.language_model"
    builtin_models: ClassVar[tuple[str, ...]] = ("tiny-qwen2.5-vl",)
    default_box_convention: ClassVar[BoxConvention] = MODEL_INPUT_PIXELS

    def set_pixel_bounds(self, processor: Any, min_pixels: int | None, max_pixels: int | None) -> None:
        """Set the image processor's area bounds (``size.shortest_edge``/``longest_edge`` hold pixels)."""
        image_processor = processor.image_processor
        bounds = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
        bounds = {key: value for key, value in bounds.items() if value is not None}
        if not bounds:
            return
        size = image_processor.size
        # transformers keeps a SizeDict (a dataclass) here; older versions a plain dict.
        image_processor.size = {**size, **bounds} if isinstance(size, dict) else dataclasses.replace(size, **bounds)

    def model_input_size(self, image_size: Size, processor: Any) -> Size:
        """``(14*grid_w, 14*grid_h)`` for an image of ``(W, H)``: the processor's smart resize."""
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        image_processor = processor.image_processor
        size = image_processor.size
        min_pixels = size["shortest_edge"] if isinstance(size, dict) else size.shortest_edge
        max_pixels = size["longest_edge"] if isinstance(size, dict) else size.longest_edge
        factor = int(image_processor.patch_size) * int(image_processor.merge_size)
        width, height = image_size
        resized_h, resized_w = smart_resize(
            int(height), int(width), factor=factor, min_pixels=int(min_pixels), max_pixels=int(max_pixels)
        )
        return (int(resized_w), int(resized_h))
