"""Box coordinate conventions: which frame a model's predicted boxes are in.

Ground-truth boxes in VLM-R1 data are ``[x1, y1, x2, y2]`` in original-image pixels. A
model predicts boxes in its own frame; the ``rec_iou`` reward maps them back with two
dataset columns, ``image_size`` = ``[W_orig, H_orig]`` and ``input_size`` = ``[W_ref, H_ref]``:
``x' = x / W_ref * W_orig`` and ``y' = y / H_ref * H_orig`` (float64, dividing first,
exactly as VLM-R1's Qwen module). A convention therefore only has to say which
reference size it puts in ``input_size``, or that it adds no columns at all.

Pure Python: imported by data preparation and rewards without torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "MODEL_INPUT_PIXELS",
    "NORMALIZED_1000",
    "ORIGINAL_PIXELS",
    "BoxConvention",
    "rescale_box",
]

Size = tuple[int, int]
"""``(width, height)`` in pixels."""


def rescale_box(box: Sequence[float], image_size: Sequence[float], input_size: Sequence[float]) -> list[float]:
    """Map ``[x1, y1, x2, y2]`` from a ``input_size`` frame to ``image_size`` (both ``[W, H]``).

    Divides before multiplying, as VLM-R1 does, so results match its rewards bit for bit.

    >>> rescale_box([14, 28, 56, 56], image_size=[100, 50], input_size=[56, 56])
    [25.0, 25.0, 100.0, 50.0]
    """
    w_orig, h_orig = float(image_size[0]), float(image_size[1])
    w_in, h_in = float(input_size[0]), float(input_size[1])
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    return [x1 / w_in * w_orig, y1 / h_in * h_orig, x2 / w_in * w_orig, y2 / h_in * h_orig]


@dataclass(frozen=True)
class BoxConvention:
    """The frame a model family predicts boxes in, and the dataset columns that undo it."""

    kind: Literal["model_input_pixels", "normalized", "original_pixels"]
    """``model_input_pixels``: pixels of the resized image the vision tower saw (Qwen2.5-VL).
    ``normalized``: a fixed ``scale`` x ``scale`` frame (InternVL's 0-1000 grounding).
    ``original_pixels``: the original image's pixels (no columns, no rescaling)."""
    description: str
    """One line for documentation and ``vlmr1`` output."""
    scale: int | None = None
    """Side of the normalized frame (1000 for InternVL); only with kind ``normalized``."""

    @property
    def adds_columns(self) -> bool:
        """Whether samples get ``image_size``/``input_size`` columns."""
        return self.kind != "original_pixels"

    def reference_size(self, input_size: Size | None) -> Size | None:
        """The ``input_size`` column value given the model-input size ``(W, H)``, if any."""
        if self.kind == "model_input_pixels":
            return input_size
        if self.kind == "normalized":
            assert self.scale is not None
            return (self.scale, self.scale)
        return None

    def columns(self, image_size: Size | None, input_size: Size | None) -> dict[str, Any]:
        """Dataset columns for one sample (``None`` values when the sizes are unknown).

        Every sample of a dataset gets the same keys (Arrow needs one schema); a ``None``
        size makes ``rec_iou`` skip the rescale for that sample.
        """
        if not self.adds_columns:
            return {}
        reference = self.reference_size(input_size)
        if image_size is None or reference is None:
            return {"image_size": None, "input_size": None}
        return {"image_size": [int(image_size[0]), int(image_size[1])], "input_size": [int(v) for v in reference]}

    def to_original(self, box: Sequence[float], image_size: Size, input_size: Size | None = None) -> list[float]:
        """A predicted box in original-image pixels (what ``rec_iou`` compares)."""
        reference = self.reference_size(input_size)
        if reference is None:
            if self.kind == "model_input_pixels":
                raise ValueError("model-input-pixel boxes need the model-input size to be rescaled")
            return [float(v) for v in box[:4]]
        return rescale_box(box, image_size, reference)

    def from_original(self, box: Sequence[float], image_size: Size, input_size: Size | None = None) -> list[float]:
        """A ground-truth box in this convention's frame (for prompts and few-shot answers)."""
        reference = self.reference_size(input_size)
        if reference is None:
            if self.kind == "model_input_pixels":
                raise ValueError("model-input-pixel boxes need the model-input size")
            return [float(v) for v in box[:4]]
        return rescale_box(box, reference, image_size)


MODEL_INPUT_PIXELS = BoxConvention(
    kind="model_input_pixels",
    description="absolute pixels of the resized model input (14*grid_w x 14*grid_h); "
    "image_size and input_size columns rescale to the original image",
)
NORMALIZED_1000 = BoxConvention(
    kind="normalized",
    scale=1000,
    description="coordinates normalized to 0..1000 of the image side; image_size and input_size=[1000, 1000] columns",
)
ORIGINAL_PIXELS = BoxConvention(
    kind="original_pixels",
    description="absolute pixels of the original image; no size columns, no rescaling",
)
