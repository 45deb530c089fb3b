"""``builtin://tiny-qwen2.5-vl`` and ``builtin://tiny-internvl``: random-weight VLMs built offline.

No hub is needed: a byte-level BPE of a few hundred tokens is trained with ``tokenizers``
on a fixed corpus, wrapped in ``Qwen2Tokenizer`` with the family's special tokens and
chat template; the image processor uses tiny images; the config is a two-layer model
(hidden size 64) whose image/video/vision token ids come from the tokenizer. The result
is saved with ``save_pretrained`` into ``<cache>/builtin/<name>`` (``<name>-seed<N>`` for a
non-default seed), so everything else loads it like any local checkpoint.

Building is deterministic given the seed and takes about a second once transformers is
imported. It happens in a temporary sibling folder that is renamed into place, so
concurrent processes (several ranks of one node) and crashes never expose half a model.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "BUILTIN_MODELS",
    "DEFAULT_SEED",
    "MARKER",
    "RECIPE_VERSION",
    "build_builtin",
    "builtin_dir",
    "ensure_builtin",
    "qwen2_5_vl_processor",
    "qwen_model",
]

RECIPE_VERSION = 3
"""Bumped whenever the recipe changes, so cached builds of an older recipe are rebuilt."""
DEFAULT_SEED = 0
MARKER = "vlmr1-builtin.json"
"""Written last into a finished build: name, seed and recipe version."""

_VOCAB_SIZE = 448
_QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
_INTERNVL_NAMED = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}
_INTERNVL_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    *_INTERNVL_NAMED.values(),
    "<quad>",
    "</quad>",
    "<ref>",
    "</ref>",
    "<box>",
    "</box>",
)

# Qwen2.5-VL's chat template, less the video and tool branches.
_QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# InternVL3-hf's chat template, less the default system prompt.
_INTERNVL_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# What the tokenizer is trained on: the prompts and answers the tiny models see in tests
# and examples, so common words are single tokens and sequences stay short.
_CORPUS = (
    "First output the thinking process in <think> </think> tags and then output the final answer in "
    "<answer> </answer> tags. Output the final answer in JSON format.",
    "First thinks about the reasoning process in the mind and then provides the user with the answer.",
    "Please provide the bounding box coordinate of the region this sentence describes: the red square on the left.",
    '<think> The object is in the top left corner. </think><answer> {"bbox_2d": [12, 34, 56, 78]} </answer>',
    '<answer> [{"bbox_2d": [0, 0, 10, 10], "label": "cat"}, {"bbox_2d": [5, 5, 20, 20], "label": "dog"}] </answer>',
    "What is the value of x if 2x + 3 = 11? The answer is 4. Which option is correct: A, B, C or D? yes no",
    "Compare the two screenshots and find the defect: the button is missing, the text overlaps, the icon is wrong.",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 person car dog cat bird chair table bottle cup phone window door",
    "What colour is the shape? A. red B. green C. blue D. yellow E. purple <think>The shape is red.</think>",
    "<think>The shape is green.</think><think>The shape is blue.</think><think>The shape is yellow.</think>"
    "<think>The shape is purple.</think><answer>A</answer>",
)


def _tokenizer_parts() -> tuple[dict[str, int], list[tuple[str, str]]]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(list(_CORPUS) * 8, trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    pairs = [m if isinstance(m, list) else str(m).split(" ") for m in model["merges"]]
    return vocab, [(str(a), str(b)) for a, b in pairs]


def _tokenizer(
    specials: tuple[str, ...],
    named: dict[str, str],
    chat_template: str,
    parts: tuple[dict[str, int], list[tuple[str, str]]] | None = None,
) -> Any:
    from transformers import Qwen2Tokenizer

    vocab, merges = parts or _tokenizer_parts()
    vocab = dict(vocab)
    for token in specials:
        vocab[token] = len(vocab)
    extra: dict[str, str] | list[str] = named or [t for t in specials if t != "<|endoftext|>"]
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,  # type: ignore[arg-type]  # BPE takes pairs; the hint says "a b" strings
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=extra,
    )
    if named:
        # Named tokens (InternVL's image markers) go in first; the rest become extra specials.
        rest = [t for t in specials if t not in named.values() and t != "<|endoftext|>"]
        tokenizer.add_special_tokens({"extra_special_tokens": rest}, replace_extra_special_tokens=False)
    tokenizer.chat_template = chat_template
    return tokenizer


def _text_config(tokenizer: Any, **extra: Any) -> dict[str, Any]:
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "bos_token_id": None,
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
        "pad_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": False,
        **extra,
    }


def _save(model: Any, processor: Any, dest: Path) -> None:
    # Batched calls leave their padding settings on the fast tokenizer, which tokenizer.json
    # would record: a builtin saves the same tokenizer whether or not it was trained first.
    processor.tokenizer.backend_tokenizer.no_padding()
    model.generation_config.eos_token_id = model.config.text_config.eos_token_id
    model.generation_config.pad_token_id = model.config.text_config.pad_token_id
    model.save_pretrained(dest)
    processor.save_pretrained(dest)


def qwen2_5_vl_processor(
    *, min_pixels: int, max_pixels: int, parts: tuple[dict[str, int], list[tuple[str, str]]] | None = None
) -> Any:
    """A Qwen2.5-VL processor built offline: Qwen's special tokens (appended to the vocabulary in
    Qwen's order, so a vocabulary of 151,643 byte-level tokens gives them Qwen2.5's own ids), its
    chat template, and the PIL image processor with the given pixel bounds. ``parts`` is a
    byte-level BPE ``(vocab, merges)``; default: the tiny one trained on the builtin corpus."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from vlmr1_core.processors import TinyQwen2_5_VLProcessor

    tokenizer = _tokenizer(_QWEN_SPECIALS, {}, _QWEN_CHAT_TEMPLATE, parts)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels)
    return TinyQwen2_5_VLProcessor(image_processor, tokenizer, chat_template=_QWEN_CHAT_TEMPLATE)


def _build_qwen(dest: Path) -> None:
    _save(*qwen_model(), dest)


def qwen_model() -> tuple[Any, Any]:
    """The random-weight tiny Qwen2.5-VL and its processor (torch's RNG decides the weights)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    # 56x56 .. 112x112 pixels: 4 to 16 image tokens after the 2x2 merge.
    processor = qwen2_5_vl_processor(min_pixels=56 * 56, max_pixels=112 * 112)
    tokenizer = processor.tokenizer
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        # mrope_section sums to head_dim / 2 = 64 / 4 / 2.
        text_config=_text_config(
            tokenizer, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
        ),
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "fullatt_block_indexes": [1],
            "window_size": 56,
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )
    return Qwen2_5_VLForConditionalGeneration(config), processor


def _build_internvl(dest: Path) -> None:
    from transformers import InternVLConfig, InternVLForConditionalGeneration
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    from vlmr1_core.processors import TinyInternVLProcessor

    tokenizer = _tokenizer(_INTERNVL_SPECIALS, _INTERNVL_NAMED, _INTERNVL_CHAT_TEMPLATE)
    # 56x56 tiles of 14x14 patches, pixel-shuffled by 0.5: 4 tokens per tile; at most 2 tiles
    # plus the thumbnail, so the dynamic tiling path of real InternVL is exercised.
    tile, patch, seq = 56, 14, 4
    image_processor = GotOcr2ImageProcessorPil(
        size={"height": tile, "width": tile}, crop_to_patches=True, min_patches=1, max_patches=2
    )
    processor = TinyInternVLProcessor(
        image_processor, tokenizer, image_seq_length=seq, chat_template=_INTERNVL_CHAT_TEMPLATE
    )
    config = InternVLConfig(
        text_config=_text_config(tokenizer, model_type="qwen2"),
        vision_config={
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "image_size": tile,
            "patch_size": patch,
        },
        image_token_id=tokenizer.context_image_token_id,
        image_seq_length=seq,
        downsample_ratio=0.5,
        tie_word_embeddings=False,
    )
    _save(InternVLForConditionalGeneration(config), processor, dest)


def _build_qwen_colour(dest: Path) -> None:
    from vlmr1_trainer.vlm.builtin_colour import build_colour

    model, processor = qwen_model()
    build_colour(model, processor, dest)
    _save(model, processor, dest)


def _build_qwen3_vl(dest: Path) -> None:
    from vlmr1_trainer.vlm.builtin_qwen3 import build_qwen3_vl

    build_qwen3_vl(dest)


def _build_qwen3_5(dest: Path) -> None:
    from vlmr1_trainer.vlm.builtin_qwen3 import build_qwen3_5

    build_qwen3_5(dest)


def _build_glm4v(dest: Path) -> None:
    from vlmr1_trainer.vlm.builtin_glm4v import build_glm4v

    build_glm4v(dest)


BUILTIN_MODELS: dict[str, Callable[[Path], None]] = {
    "tiny-qwen2.5-vl": _build_qwen,
    "tiny-qwen2.5-vl-colour": _build_qwen_colour,
    "tiny-qwen3-vl": _build_qwen3_vl,
    "tiny-qwen3.5": _build_qwen3_5,
    "tiny-glm4.1v": _build_glm4v,
    "tiny-internvl": _build_internvl,
}
"""Builtin model name -> builder writing a complete ``save_pretrained`` folder."""


def builtin_dir(name: str, *, cache_root: Path | None = None, seed: int | None = None) -> Path:
    """Where the builtin model ``name`` is cached."""
    from vlmr1_core.uri import cache_dir

    seed = DEFAULT_SEED if seed is None else seed
    folder = name if seed == DEFAULT_SEED else f"{name}-seed{seed}"
    return (cache_root or cache_dir()) / "builtin" / folder


def _stamp(name: str, seed: int) -> dict[str, Any]:
    return {"name": name, "seed": seed, "recipe": RECIPE_VERSION}


def build_builtin(name: str, dest: Path, *, seed: int = DEFAULT_SEED) -> None:
    """Build the builtin model ``name`` into the (new or empty) folder ``dest``."""
    import torch

    if name not in BUILTIN_MODELS:
        known = ", ".join(sorted(BUILTIN_MODELS))
        raise ValueError(f"unknown builtin model {name!r}; known: {known}")
    dest.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        BUILTIN_MODELS[name](dest)
    (dest / MARKER).write_text(json.dumps(_stamp(name, seed), sort_keys=True) + "\n")


def _is_current(path: Path, name: str, seed: int) -> bool:
    try:
        return bool(json.loads((path / MARKER).read_text()) == _stamp(name, seed))
    except (OSError, ValueError):
        return False


def ensure_builtin(name: str, *, cache_root: Path | None = None, seed: int | None = None) -> Path:
    """The folder of the builtin model ``name``, built first when missing or stale."""
    if name not in BUILTIN_MODELS:
        known = ", ".join(f"builtin://{n}" for n in sorted(BUILTIN_MODELS))
        raise ValueError(f"unknown builtin model builtin://{name}; known: {known}")
    seed = DEFAULT_SEED if seed is None else seed
    path = builtin_dir(name, cache_root=cache_root, seed=seed)
    if _is_current(path, name, seed):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.building-", dir=path.parent))
    try:
        build_builtin(name, staging, seed=seed)
        if path.exists() and not _is_current(path, name, seed):
            shutil.rmtree(path)  # an older recipe or an interrupted pre-marker layout
        try:
            staging.rename(path)
        except OSError:
            # Another process renamed its identical build into place first.
            if not _is_current(path, name, seed):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path
