"""Qwen2.5-VL-3B's architecture with random weights, built with no hub, and REC data at 448x448.

The numbers are those of the published configuration of Qwen/Qwen2.5-VL-3B-Instruct
(config.json and preprocessor_config.json): a 36-layer Qwen2.5 language model (hidden
2048, MLP 11008, 16 query and 2 key/value heads, vocabulary 151,936, tied embeddings,
M-RoPE sections 16/24/24) and a 32-block vision transformer (hidden 1280, MLP 3420, 16
heads, 14-pixel patches merged 2x2 into 2048-wide tokens, 112-pixel attention windows
with full attention in blocks 7, 15, 23 and 31). ``tiny`` keeps every structural choice
(vocabulary, special-token ids, tied embeddings, windows, merge) at a size a CPU runs in
seconds, so the benchmark's code path can be checked without a GPU.

The tokenizer is a synthetic byte-level BPE with Qwen2.5's 151,643 ordinary tokens (every
byte pair, then byte triples), so the special tokens get Qwen's ids (``<|im_end|>`` 151645,
``<|image_pad|>`` 151655) and the published config's token ids are right as they are. It
splits English into about two characters per token where Qwen's own averages about four:
a REC prompt here has 165 text tokens beside the 256 image tokens of a 448x448 image, where
Qwen's tokenizer would make roughly half as many text tokens. Generated ids above the
tokenizer's vocabulary (the model's 151,936 rows are padded, as in the real model) decode to
nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

QWEN_ORDINARY_TOKENS = 151_643
"""Qwen2.5's ordinary (byte-level BPE) tokens; its special tokens start at this id."""

#: Qwen/Qwen2.5-VL-3B-Instruct config.json (language model).
TEXT_3B: dict[str, Any] = {
    "vocab_size": 151_936,
    "hidden_size": 2048,
    "intermediate_size": 11_008,
    "num_hidden_layers": 36,
    "num_attention_heads": 16,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 128_000,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]},
    "use_sliding_window": False,
    "sliding_window": 32_768,
    "max_window_layers": 70,
    "attention_dropout": 0.0,
    "bos_token_id": 151_643,
    "eos_token_id": 151_645,
    "tie_word_embeddings": True,
}
#: Its vision_config.
VISION_3B: dict[str, Any] = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "in_chans": 3,
    "out_hidden_size": 2048,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
    "hidden_act": "silu",
}
#: Its special-token ids (they follow from the tokenizer built here too; checked when building).
TOKEN_IDS_3B = {
    "image_token_id": 151_655,
    "video_token_id": 151_656,
    "vision_start_token_id": 151_652,
    "vision_end_token_id": 151_653,
}
#: preprocessor_config.json's pixel bounds.
MIN_PIXELS, MAX_PIXELS = 3136, 12_845_056

#: The same structure at a size a CPU trains in seconds (the benchmark's dry run).
TEXT_TINY = TEXT_3B | {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [2, 3, 3]},
}
VISION_TINY = VISION_3B | {
    "depth": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_heads": 2,
    "out_hidden_size": 64,
    "fullatt_block_indexes": [1],
}
SIZES = {"3b": (TEXT_3B, VISION_3B), "tiny": (TEXT_TINY, VISION_TINY)}


def _bytes_to_unicode() -> dict[int, str]:
    # GPT-2's byte-level alphabet (Qwen's too): printable bytes stand for themselves, the rest
    # are shifted above 255, so every byte is one visible character.
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    shifted = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + shifted)
            shifted += 1
    return {byte: chr(char) for byte, char in zip(printable, chars, strict=True)}


def qwen_sized_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE with exactly Qwen2.5's 151,643 ordinary tokens (a second's work).

    Bytes first (common English characters at the front), then every byte pair, then byte
    triples in that order until the vocabulary is full; merges in creation order.
    """
    alphabet = _bytes_to_unicode()
    front = " etaoinsrhldcumfpgwybvkxjqzETAOINSRHLDCUMFPGWYBVKXJQZ0123456789.,:;<>/\"'[]{}()_-?!|\n"
    order = [alphabet[b] for b in front.encode()]
    order += [alphabet[b] for b in range(256) if alphabet[b] not in order]
    vocab = {char: i for i, char in enumerate(order)}
    merges: list[tuple[str, str]] = []
    for left in order:
        for right in order:
            merges.append((left, right))
            vocab[left + right] = len(vocab)
    pairs = [left + right for left in order for right in order]
    for pair in pairs:
        for right in order:
            if len(vocab) == QWEN_ORDINARY_TOKENS:
                return vocab, merges
            merges.append((pair, right))
            vocab[pair + right] = len(vocab)
    raise AssertionError("unreachable: 256 + 256**2 + 256**3 > the vocabulary")


def build_model_dir(dest: Path, size: str, device: str) -> dict[str, Any]:
    """Write a ``from_pretrained`` folder of Qwen2.5-VL at ``size`` with random bf16 weights.

    The weights are initialised on ``device`` (seconds on a GPU for 3.75B parameters) with the
    model's own initialiser, seeded, then saved as safetensors. Returns a description
    (parameter counts by part, token ids) for the benchmark's report and FLOP model.
    """
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    processor = build_processor()
    ids = {key: processor.tokenizer.convert_tokens_to_ids(token) for key, token in ID_TOKENS.items()}
    if ids != TOKEN_IDS_3B:
        raise AssertionError(f"the synthetic tokenizer's special ids {ids} differ from Qwen2.5-VL's {TOKEN_IDS_3B}")
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration(model_config(size)).to(torch.bfloat16)
    model.generation_config.eos_token_id = SIZES[size][0]["eos_token_id"]
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    processor.save_pretrained(dest)
    described = describe(model)
    (dest / "bench-model.json").write_text(json.dumps(described, indent=2) + "\n")
    return described


def model_config(size: str) -> Any:
    """The ``Qwen2_5_VLConfig`` of ``size`` (``3b``: the published one)."""
    from transformers import Qwen2_5_VLConfig

    text, vision = SIZES[size]
    return Qwen2_5_VLConfig(
        text_config=dict(text),
        vision_config=dict(vision),
        tie_word_embeddings=text["tie_word_embeddings"],
        **TOKEN_IDS_3B,
    )


def build_processor() -> Any:
    """Qwen2.5-VL's processor with the synthetic Qwen-sized tokenizer and the published pixel bounds."""
    from vlmr1_trainer.vlm.builtin import qwen2_5_vl_processor

    return qwen2_5_vl_processor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, parts=qwen_sized_bpe())


ID_TOKENS = {
    "image_token_id": "<|image_pad|>",
    "video_token_id": "<|video_pad|>",
    "vision_start_token_id": "<|vision_start|>",
    "vision_end_token_id": "<|vision_end|>",
}


def describe(model: Any) -> dict[str, Any]:
    """Parameter counts by the parts the FLOP model distinguishes."""

    def count(module: Any) -> int:
        return sum(p.numel() for p in module.parameters())

    inner = model.model
    text_config = model.config.text_config
    embedding = count(inner.language_model.embed_tokens)
    return {
        "parameters": count(model),
        "language_body": count(inner.language_model) - embedding,
        "lm_head": text_config.vocab_size * text_config.hidden_size,
        "vision_blocks": count(inner.visual) - count(inner.visual.merger),
        "vision_merger": count(inner.visual.merger),
        "patch_size": model.config.vision_config.patch_size,
        "merge_size": model.config.vision_config.spatial_merge_size,
    }


def write_rec_data(source: Path, dest: Path, side: int, count: int) -> Path:
    """REC samples with ``side`` x ``side`` images: the shipped rec-shapes scenes scaled up.

    Boxes are scaled with the images (nearest-neighbour, so shapes keep hard edges); the
    JSONL is VLM-R1's format, as the training data of a real job. Returns the JSONL path.
    """
    from PIL import Image

    (dest / "images").mkdir(parents=True, exist_ok=True)
    lines = (source / "train.jsonl").read_text().splitlines()
    out = []
    for index in range(count):
        sample = json.loads(lines[index % len(lines)])
        image = Image.open(source / "images" / sample["image"]).convert("RGB")
        sx, sy = side / image.width, side / image.height
        name = f"{index:04d}.png"
        image.resize((side, side), Image.Resampling.NEAREST).save(dest / "images" / name)
        x1, y1, x2, y2 = json.loads(sample["conversations"][1]["value"])
        box = [round(x1 * sx), round(y1 * sy), round(x2 * sx), round(y2 * sy)]
        sample |= {"id": f"bench-{index:04d}", "image": f"images/{name}"}
        sample["conversations"] = [sample["conversations"][0], {"from": "gpt", "value": json.dumps(box)}]
        out.append(json.dumps(sample))
    jsonl = dest / "train.jsonl"
    jsonl.write_text("\n".join(out) + "\n")
    return jsonl
