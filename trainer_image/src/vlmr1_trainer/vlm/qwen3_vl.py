"""Qwen3-VL (``Qwen3VLForConditionalGeneration``; ``Qwen3VLMoeForConditionalGeneration`` for the MoE checkpoints).

Images go through transformers' ``Qwen2VLImageProcessor`` with Qwen3's 16-pixel patches
merged 2x2: both sides are resized to multiples of 32 within ``minPixels``..``maxPixels``
(the processor's ``size.shortest_edge``/``longest_edge``), as for Qwen2.5-VL with 28.

Boxes: Qwen3-VL answers on a 0..1000 grid of each image side, not in pixels. Qwen's own
grounding cookbook (QwenLM/Qwen3-VL, ``cookbooks/2d_grounding.ipynb``): "Coordinate System:
Qwen3-VL's default coordinate system has been changed from the absolute coordinates used in
Qwen2.5-VL to relative coordinates ranging from 0 to 1000. (You don't need to calculate the
resized_w)"; its plotting code maps back with ``x / 1000 * width``. So the default
convention is ``NORMALIZED_1000``: samples get ``image_size`` = ``[W, H]`` and
``input_size`` = ``[1000, 1000]``, and ``rec_iou`` rescales exactly that way.

Module tree (transformers 5): the vision tower ``model.visual`` holds the patch embedding,
the learned position grid, the blocks, the merger (the vision -> text projector) and the
DeepStack mergers (``deepstack_merger_list``, whose features are added to the first
language-model layers); all of it is frozen by ``freezeVision`` and kept free of LoRA, as
VLM-R1's "visual" keyword does for Qwen2.5-VL. The language model is ``model.language_model``
(``lm_head`` beside it).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

from vlmr1_core.config import ModelFamily
from vlmr1_trainer.vlm.base import VLMFamily
from vlmr1_trainer.vlm.boxes import NORMALIZED_1000, BoxConvention, Size

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from vlmr1_trainer.storage import ModelSource

__all__ = ["Qwen3Family", "Qwen3VLFamily"]


class Qwen3Family(VLMFamily):
    """What Qwen3-VL and Qwen3.5 share: the processor, the box frame, the module layout, and a
    dense and a mixture-of-experts model class picked by the checkpoint's ``model_type``."""

    vision_modules: ClassVar[tuple[str, ...]] = ("model.visual",)
    language_model_module: ClassVar[str] = "model.language_model"
    default_box_convention: ClassVar[BoxConvention] = NORMALIZED_1000
    moe_model_types: ClassVar[dict[str, str]] = {}
    """``model_type`` of a checkpoint -> the transformers class that loads it instead of
    ``model_class_name`` (the MoE variants share the module layout, not the weights)."""

    def __init__(self, box_convention: BoxConvention | None = None) -> None:
        super().__init__(box_convention)
        self._class_name = self.model_class_name

    def model_class(self) -> type[PreTrainedModel]:
        """The transformers class of the checkpoint last loaded (the dense one before any)."""
        import transformers

        cls: type[PreTrainedModel] = getattr(transformers, self._class_name)
        return cls

    def class_name_for(self, source: ModelSource) -> str:
        """The class for a resolved checkpoint, from its ``config.json`` ``model_type``.

        A config that cannot be read here leaves the dense class: ``from_pretrained`` then
        reports the missing files the way every family does.
        """
        from transformers import PretrainedConfig

        options = {"revision": source.revision} if source.revision is not None else {}
        try:
            config, _ = PretrainedConfig.get_config_dict(source.pretrained, **options)
        except OSError:
            return self.model_class_name
        return self.moe_model_types.get(str(config.get("model_type")), self.model_class_name)

    def load_model(self, source: ModelSource | str, *, revision: str | None = None, **kwargs: Any) -> PreTrainedModel:
        """``VLMFamily.load_model`` with the dense or MoE class the checkpoint needs."""
        resolved = self.resolve(source, revision)
        self._class_name = self.class_name_for(resolved)
        return super().load_model(resolved, **kwargs)

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
        """``(patch*grid_w, patch*grid_h)``: the image as the vision tower sees it (the processor's smart
        resize to multiples of ``patch_size * merge_size``). Not needed by the 0..1000 convention;
        useful to check what an image costs in tokens."""
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


class Qwen3VLFamily(Qwen3Family):
    """Qwen3-VL: boxes on a 0..1000 grid of the original image."""

    name: ClassVar[ModelFamily] = "qwen3-vl"
    model_class_name: ClassVar[str] = "Qwen3VLForConditionalGeneration"
    moe_model_types: ClassVar[dict[str, str]] = {"qwen3_vl_moe": "Qwen3VLMoeForConditionalGeneration"}
    builtin_models: ClassVar[tuple[str, ...]] = ("tiny-qwen3-vl",)
