"""``builtin://tiny-glm4.1v``: a random-weight GLM-4.1V built offline (see :mod:`.builtin`).

The same recipe as the tiny Qwen2.5-VL: the builtin byte-level BPE, wrapped with GLM's
special tokens in the order of GLM-4.1V's vocabulary (``<|endoftext|>`` ... ``<|video|>``,
then the box markers) and GLM-4.1V-9B-Thinking's own chat template, verbatim;
the PIL image processor with tiny images; a two-layer config (hidden size 64, vision depth
2, partial rotary 0.5 and an ``mrope_section`` summing to a quarter of the head size, as
GLM's ``[8, 12, 12]`` does for 128) whose image/video ids come from the tokenizer.

As in GLM-4.1V, the tokenizer's end of sequence (and padding) is ``<|endoftext|>`` and a
completion also ends at ``<|user|>`` or ``<|observation|>`` (the config's eos list, which
TRL honours). The processor is :class:`vlmr1_core.processors.TinyGlm4vProcessor` (no video
processor: transformers' need torchvision).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["GLM_CHAT_TEMPLATE", "GLM_SPECIALS", "build_glm4v", "glm4v_model", "glm4v_processor"]

GLM_SPECIALS = (
    "<|endoftext|>",
    "[MASK]",
    "[gMASK]",
    "[sMASK]",
    "<sop>",
    "<eop>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|observation|>",
    "<|begin_of_image|>",
    "<|end_of_image|>",
    "<|begin_of_video|>",
    "<|end_of_video|>",
    "<|image|>",
    "<|video|>",
    "<|begin_of_box|>",
    "<|end_of_box|>",
)
"""GLM-4.1V's special tokens, in the order of its vocabulary (151329 ``<|endoftext|>`` ...)."""

_STOP_TOKENS = ("<|endoftext|>", "<|user|>", "<|observation|>")
"""GLM-4.1V's generation_config eos ids: an assistant turn ends where the next turn would begin."""

# GLM-4.1V-9B-Thinking's chat_template.jinja (as published with the model).
GLM_CHAT_TEMPLATE = """[gMASK]<sop>
{%- for msg in messages %}
    {%- if msg.role == 'system' %}
<|system|>
{{ msg.content }}
    {%- elif msg.role == 'user' %}
<|user|>{{ '\\n' }}

        {%- if msg.content is string %}
{{ msg.content }}
        {%- else %}
            {%- for item in msg.content %}
                {%- if item.type == 'video' or 'video' in item %}
<|begin_of_video|><|video|><|end_of_video|>
                {%- elif item.type == 'image' or 'image' in item %}
<|begin_of_image|><|image|><|end_of_image|>
                {%- elif item.type == 'text' %}
{{ item.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
    {%- elif msg.role == 'assistant' %}
        {%- if msg.metadata %}
<|assistant|>{{ msg.metadata }}
{{ msg.content }}
        {%- else %}
<|assistant|>
{{ msg.content }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{% if add_generation_prompt %}<|assistant|>
{% endif %}"""


def _glm_tokenizer() -> Any:
    from transformers import Qwen2Tokenizer

    from vlmr1_trainer.vlm.builtin import _tokenizer_parts

    vocab, merges = _tokenizer_parts()
    vocab = dict(vocab)
    for token in GLM_SPECIALS:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,  # type: ignore[arg-type]  # BPE takes pairs; the hint says "a b" strings
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=[t for t in GLM_SPECIALS if t != "<|endoftext|>"],
    )
    tokenizer.chat_template = GLM_CHAT_TEMPLATE
    return tokenizer


def glm4v_processor(*, min_pixels: int = 56 * 56, max_pixels: int = 112 * 112) -> Any:
    """The tiny GLM-4.1V processor: images resized to ``min_pixels``..``max_pixels`` of area.

    GLM's resize bounds two temporal frames of an image, hence the doubled size values.
    """
    from transformers.models.glm4v.image_processing_pil_glm4v import Glm4vImageProcessorPil

    from vlmr1_core.processors import TinyGlm4vProcessor

    tokenizer = _glm_tokenizer()
    temporal = Glm4vImageProcessorPil.temporal_patch_size  # 2, as GLM-4.1V's
    image_processor = Glm4vImageProcessorPil(
        size={"shortest_edge": temporal * min_pixels, "longest_edge": temporal * max_pixels}
    )
    return TinyGlm4vProcessor(image_processor, tokenizer, chat_template=GLM_CHAT_TEMPLATE)


def glm4v_model() -> tuple[Any, Any]:
    """The random-weight tiny GLM-4.1V and its processor (torch's RNG decides the weights)."""
    from transformers import Glm4vConfig, Glm4vForConditionalGeneration

    from vlmr1_trainer.vlm.builtin import _text_config

    # 56x56 .. 112x112 pixels: 4 to 16 image tokens after the 2x2 merge.
    processor = glm4v_processor(min_pixels=56 * 56, max_pixels=112 * 112)
    tokenizer = processor.tokenizer
    ids = tokenizer.convert_tokens_to_ids
    config = Glm4vConfig(
        text_config=_text_config(
            tokenizer,
            eos_token_id=[ids(t) for t in _STOP_TOKENS],
            # head_dim 16, half of it rotary (GLM's partial_rotary_factor): 4 frequencies = 1 + 1 + 2.
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000.0,
                "partial_rotary_factor": 0.5,
                "mrope_section": [1, 1, 2],
            },
        ),
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,  # = the text hidden size: the merger projects into it
            "image_size": 56,  # 4x4 learned positions, interpolated to each image's grid
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids("<|image|>"),
        video_token_id=ids("<|video|>"),
        image_start_token_id=ids("<|begin_of_image|>"),
        image_end_token_id=ids("<|end_of_image|>"),
        video_start_token_id=ids("<|begin_of_video|>"),
        video_end_token_id=ids("<|end_of_video|>"),
        tie_word_embeddings=False,
    )
    return Glm4vForConditionalGeneration(config), processor


def build_glm4v(dest: Path) -> None:
    """Build ``tiny-glm4.1v`` into ``dest`` (called by :func:`.builtin.build_builtin` under its seed)."""
    from vlmr1_trainer.vlm.builtin import _save

    _save(*glm4v_model(), dest)
