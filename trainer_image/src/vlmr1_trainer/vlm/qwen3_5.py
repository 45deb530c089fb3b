"""Qwen3.5 (``Qwen3_5ForConditionalGeneration``; ``Qwen3_5MoeForConditionalGeneration`` for the MoE checkpoints).

Qwen3.5 is a vision-language model, not a text model with a separate VL sibling: its
checkpoints (dense ``Qwen/Qwen3.5-0.8B``, ``-2B``, ... and MoE ``-35B-A3B``, ``-397B-A17B``, ...)
carry a vision tower, transformers loads them as ``...ForConditionalGeneration`` with
``model.visual`` beside ``model.language_model``, and ``AutoProcessor`` maps ``qwen3_5`` to
Qwen3-VL's processor (``Qwen3VLProcessor``: ``Qwen2VLImageProcessor`` with 16-pixel patches
merged 2x2, the same ``<|vision_start|><|image_pad|><|vision_end|>`` placeholders). The
vision tower is Qwen3-VL's without the DeepStack mergers.

Boxes: the same 0..1000 grid as Qwen3-VL (``NORMALIZED_1000``). Evidence, weaker than for
Qwen3-VL: Qwen has published no grounding cookbook for Qwen3.5; its processor and vision
tower are Qwen3-VL's, and third-party guides that cover both ("Qwen3-VL and 3.5 uses a
relative coordinate system for bounding box outputs, normalized to a 0-1000 range") describe
the same frame. Nothing found says otherwise. Pass ``box_convention=`` to train another frame.

The language model is hybrid: three of every four layers (transformers' default layout,
``full_attention_interval`` 4) replace attention by a Gated DeltaNet (``linear_attn``:
``in_proj_qkv``, ``in_proj_z``, ``in_proj_a``, ``in_proj_b``, ``out_proj``), the fourth is
gated full attention (``self_attn.q_proj`` ... ``o_proj``); every
layer has the ``mlp`` (``gate_proj``/``up_proj``/``down_proj``). Named attention projections
would leave three quarters of the token mixing without adapters, so :meth:`lora_target_modules`
also adapts the linear-attention projections that play their part (see there).

Chat template: the released one opens a ``<think>`` block in the generation prompt unless
``enable_thinking=False`` is passed to ``apply_chat_template`` (which closes an empty block
instead). Either way the model's own text starts inside or after a block the template wrote,
so the family declares ``completion_prefix = "<think>\n"``: rewards score the prefix plus the
completion, which is what the model answered (``format`` checks that it opens with ``<think>``),
and SFT targets that open with ``<think>`` lose it, since the prompt already has it.

On CPU the Gated DeltaNet runs on transformers' pure-torch kernels (flash-linear-attention
and causal-conv1d are CUDA packages); transformers warns once that they are slower.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from vlmr1_core.config import ModelFamily
from vlmr1_trainer.vlm.qwen3_vl import Qwen3Family

__all__ = ["LINEAR_ATTENTION_LORA_TARGETS", "Qwen3_5Family"]

LINEAR_ATTENTION_LORA_TARGETS: dict[str, tuple[str, ...]] = {
    # The fused query/key/value projection, and the output gate (full attention's gate is
    # half of q_proj's output in Qwen3.5).
    "q_proj": ("in_proj_qkv", "in_proj_z"),
    "k_proj": ("in_proj_qkv",),
    "v_proj": ("in_proj_qkv",),
    "o_proj": ("out_proj",),
}
"""A full-attention projection suffix -> the Gated DeltaNet projections that do its job."""


class Qwen3_5Family(Qwen3Family):  # noqa: N801 (the model's own spelling)
    """Qwen3.5: boxes on a 0..1000 grid of the original image; hybrid linear/full attention."""

    name: ClassVar[ModelFamily] = "qwen3.5"
    model_class_name: ClassVar[str] = "Qwen3_5ForConditionalGeneration"
    moe_model_types: ClassVar[dict[str, str]] = {"qwen3_5_moe": "Qwen3_5MoeForConditionalGeneration"}
    builtin_models: ClassVar[tuple[str, ...]] = ("tiny-qwen3.5",)
    completion_prefix: ClassVar[str] = "<think>\n"

    def lora_target_modules(self, suffixes: Iterable[str]) -> str:
        """The language-model regex for ``suffixes``, plus the Gated DeltaNet projections standing in
        for the named attention projections (:data:`LINEAR_ATTENTION_LORA_TARGETS`).

        The default ``q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj`` thus adapts
        every linear layer of the language model except the per-head decay/step projections
        ``in_proj_a``/``in_proj_b`` (one output per head), which can be named explicitly.
        """
        names = [s.strip(".") for s in suffixes]
        extra = [target for name in names for target in LINEAR_ATTENTION_LORA_TARGETS.get(name, ())]
        return super().lora_target_modules([*names, *extra])
