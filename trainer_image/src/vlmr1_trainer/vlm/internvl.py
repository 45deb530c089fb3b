"""InternVL 2.5/3 in transformers' native form (``InternVLForConditionalGeneration``, the ``-hf`` checkpoints).

Images are cut into fixed-size tiles (448x448 on the real models, up to ``max_patches``
of them plus a thumbnail), so there is no single model-input size and ``minPixels``/
``maxPixels`` do not apply: the processor's ``max_patches`` bounds the image tokens.

Boxes: InternVL is trained to ground objects in coordinates normalized to 0..1000 of
the image sides (``<box>[[x1, y1, x2, y2]]</box>``). That is this family's default
convention: samples get ``image_size`` = ``[W, H]`` and ``input_size`` = ``[1000, 1000]``
and ``rec_iou`` rescales exactly as it does for Qwen2.5-VL. VLM-R1's own InternVL module
compares predicted boxes with the original-pixel ground truth unscaled; pass
``box_convention=ORIGINAL_PIXELS`` to train that way.
"""

from __future__ import annotations

from typing import Any, ClassVar

from vlmr1_core.config import ModelFamily
from vlmr1_trainer.vlm.base import VLMFamily
from vlmr1_trainer.vlm.boxes import NORMALIZED_1000, BoxConvention, Size

__all__ = ["InternVLFamily"]


class InternVLFamily(VLMFamily):
    """InternVL: boxes normalized to 0..1000 (or original pixels, as VLM-R1's module)."""

    name: ClassVar[ModelFamily] = "internvl"
    model_class_name: ClassVar[str] = "InternVLForConditionalGeneration"
    # The projector (model.multi_modal_projector, InternVL's "mlp1") stays trainable under
    # freezeVision, as in VLM-R1, which freezes only the vision model.
    vision_modules: ClassVar[tuple[str, ...]] = ("model.vision_tower",)
    language_model_module: ClassVar[str] = "model.language_model"
    builtin_models: ClassVar[tuple[str, ...]] = ("tiny-internvl",)
    default_box_convention: ClassVar[BoxConvention] = NORMALIZED_1000

    def model_input_size(self, image_size: Size, processor: Any) -> Size | None:
        """None: tiled images have no single input size (no convention of this family needs one)."""
        return None
