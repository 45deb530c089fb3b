"""``builtin://tiny-qwen3-vl`` and ``builtin://tiny-qwen3.5``: random-weight Qwen3-generation VLMs.

Built like the other builtins (:mod:`vlmr1_trainer.vlm.builtin`): the byte-level BPE
trained on the builtin corpus, wrapped in the tokenizer class transformers loads the model's
checkpoints with (``Qwen2Tokenizer``; ``Qwen3_5Tokenizer`` for Qwen3.5) with Qwen's special tokens;
transformers' own image processor for these models (``Qwen2VLImageProcessorPil`` with
Qwen3's 16-pixel patches, merged 2x2, so sides are multiples of 32) with tiny images; the
images-only :class:`~vlmr1_core.processors.TinyQwen3VLProcessor`; a two-layer model of
hidden size 64.

- Qwen3-VL: a vision tower of depth 2 whose first block also feeds a DeepStack merger
  (``deepstack_visual_indexes=[0]``), so the DeepStack path of the real model (vision
  features added to the first language-model layers) runs; interleaved M-RoPE.
- Qwen3.5: the hybrid language model of Qwen3.5 (one Gated DeltaNet linear-attention
  layer, then one gated full-attention layer, the 3:1 pattern of the real models cut to
  two layers) with partial rotary embeddings; its vision tower has no DeepStack. The
  Gated DeltaNet runs on transformers' pure-torch kernels on CPU (no flash-linear-attention
  or causal-conv1d needed).

The chat templates are the real models' image/text subset: Qwen3-VL's has no default
system turn; Qwen3.5's opens a ``<think>`` block in the generation prompt unless
``enable_thinking=False`` is passed, as the released Qwen3.5 template does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmr1_trainer.vlm.builtin import _QWEN_SPECIALS, _save, _text_config, _tokenizer, _tokenizer_parts

__all__ = [
    "QWEN3_5_CHAT_TEMPLATE",
    "QWEN3_VL_CHAT_TEMPLATE",
    "build_qwen3_5",
    "build_qwen3_vl",
    "qwen3_5_model",
    "qwen3_vl_model",
    "qwen3_vl_processor",
]

_CONTENT = (
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
)
QWEN3_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n" + _CONTENT + "<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""Qwen3-VL-Instruct's chat template, less the video, tool and vision-id branches."""
QWEN3_5_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n" + _CONTENT + "<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% else %}<think>\n{% endif %}{% endif %}"
)
"""Qwen3.5's chat template, less the video, tool and reasoning-history branches."""

# 16-pixel patches merged 2x2: sides are multiples of 32. 64x64 .. 128x128 pixels gives
# 4 to 16 image tokens per image.
_PATCH, _MERGE = 16, 2
_MIN_PIXELS, _MAX_PIXELS = 64 * 64, 128 * 128


def qwen3_vl_processor(
    *,
    min_pixels: int = _MIN_PIXELS,
    max_pixels: int = _MAX_PIXELS,
    chat_template: str = QWEN3_VL_CHAT_TEMPLATE,
    parts: tuple[dict[str, int], list[tuple[str, str]]] | None = None,
    tokenizer: Any = None,
) -> Any:
    """A Qwen3-VL/Qwen3.5 processor built offline: Qwen's special tokens, the given chat template,
    and the PIL image processor with Qwen3's patching (16 px, 2x2 merge, mean/std 0.5) and the
    given pixel bounds. ``parts`` is a byte-level BPE ``(vocab, merges)``; default: the builtin one.
    ``tokenizer``: one already built (default: ``Qwen2Tokenizer``, what Qwen3-VL loads with)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from vlmr1_core.processors import TinyQwen3VLProcessor

    if tokenizer is None:
        tokenizer = _tokenizer(_QWEN_SPECIALS, {}, chat_template, parts)
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        patch_size=_PATCH,
        merge_size=_MERGE,
        temporal_patch_size=2,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return TinyQwen3VLProcessor(image_processor, tokenizer, chat_template=chat_template)


def _qwen3_5_tokenizer(chat_template: str) -> Any:
    """The builtin BPE as ``Qwen3_5Tokenizer``: transformers loads every ``qwen3_5`` checkpoint's
    tokenizer with that class (its pre-tokenizer differs from Qwen2's), so the build uses it too
    and the saved tokenizer is the one loaded."""
    from transformers import Qwen3_5Tokenizer

    vocab, merges = _tokenizer_parts()
    vocab = dict(vocab)
    for token in _QWEN_SPECIALS:
        vocab[token] = len(vocab)
    tokenizer = Qwen3_5Tokenizer(
        vocab=vocab,
        merges=merges,  # type: ignore[arg-type]  # BPE takes pairs; the hint says "a b" strings
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=[t for t in _QWEN_SPECIALS if t != "<|endoftext|>"],
    )
    tokenizer.chat_template = chat_template
    return tokenizer


def _vision_config(**extra: Any) -> dict[str, Any]:
    return {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": 64,  # the language model's hidden size
        "patch_size": _PATCH,
        "spatial_merge_size": _MERGE,
        "temporal_patch_size": 2,
        "num_position_embeddings": 64,  # an 8x8 learned grid, interpolated to each image's patch grid
        **extra,
    }


def qwen3_vl_model() -> tuple[Any, Any]:
    """The random-weight tiny Qwen3-VL and its processor (torch's RNG decides the weights)."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    processor = qwen3_vl_processor()
    tokenizer = processor.tokenizer
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen3VLConfig(
        # head_dim 16; mrope_section sums to head_dim / 2, interleaved as in the real model.
        text_config=_text_config(
            tokenizer,
            head_dim=16,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 5_000_000.0,
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
            },
        ),
        vision_config=_vision_config(deepstack_visual_indexes=[0]),
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )
    return Qwen3VLForConditionalGeneration(config), processor


def qwen3_5_model() -> tuple[Any, Any]:
    """The random-weight tiny Qwen3.5 (hybrid linear/full attention) and its processor."""
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

    processor = qwen3_vl_processor(
        chat_template=QWEN3_5_CHAT_TEMPLATE, tokenizer=_qwen3_5_tokenizer(QWEN3_5_CHAT_TEMPLATE)
    )
    tokenizer = processor.tokenizer
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen3_5Config(
        text_config=_text_config(
            tokenizer,
            # head_dim 32 with a quarter rotated, as Qwen3.5: 8 rotary dims, mrope_section sums to 4.
            head_dim=32,
            partial_rotary_factor=0.25,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10_000_000.0,
                "partial_rotary_factor": 0.25,
                "mrope_section": [2, 1, 1],
                "mrope_interleaved": True,
            },
            layer_types=["linear_attention", "full_attention"],
            linear_conv_kernel_dim=4,
            linear_key_head_dim=16,
            linear_value_head_dim=16,
            linear_num_key_heads=2,
            linear_num_value_heads=4,
        ),
        vision_config=_vision_config(),
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )
    return Qwen3_5ForConditionalGeneration(config), processor


def build_qwen3_vl(dest: Path) -> None:
    """Write ``builtin://tiny-qwen3-vl`` into ``dest`` (the caller seeds torch's RNG)."""
    _save(*qwen3_vl_model(), dest)


def build_qwen3_5(dest: Path) -> None:
    """Write ``builtin://tiny-qwen3.5`` into ``dest`` (the caller seeds torch's RNG)."""
    _save(*qwen3_5_model(), dest)
