"""SFT batches: the GRPO prompt, the answer turn as the only target."""

from __future__ import annotations

from PIL import Image

from vlmr1_trainer.supervised import IGNORE_INDEX, SupervisedCollator, masked_labels
from vlmr1_trainer.vlm.builtin import ensure_builtin
from vlmr1_trainer.vlm.prompts import DEFAULT_TEMPLATE, build_prompt


def _processor():  # type: ignore[no-untyped-def]
    from transformers import AutoProcessor

    import vlmr1_core.processors  # noqa: F401 (registers the tiny processor classes)

    return AutoProcessor.from_pretrained(ensure_builtin("tiny-qwen2.5-vl"))


def test_masked_labels_cover_target_tokens_only() -> None:
    assert masked_labels([[1, 2, 3, 4], [5, 6, 7, 0]], prompt_lengths=[1, 2], lengths=[4, 3], ignore=-1) == [
        [-1, 2, 3, 4],
        [-1, -1, 7, -1],
    ]


def test_labels_decode_to_the_target_and_end_of_turn() -> None:
    processor = _processor()
    targets = ["<think>The shape is red.</think><answer>A</answer>", "<answer>E</answer>"]
    rows = [
        {
            "prompt": build_prompt(DEFAULT_TEMPLATE, "What colour is the shape?", 1),
            "images": [Image.new("RGB", (56 + 28 * i, 56), (200, 40, 40))],
            "target": target,
        }
        for i, target in enumerate(targets)
    ]
    batch = SupervisedCollator(processor)(rows)
    tokenizer = processor.tokenizer
    assert batch["labels"].shape == batch["input_ids"].shape
    for i, target in enumerate(targets):
        labels = batch["labels"][i]
        kept = labels[labels != IGNORE_INDEX].tolist()
        assert tokenizer.decode(kept) == target + tokenizer.eos_token
        # Everything before the target is prompt (image tokens included): masked, and the
        # unmasked tokens are exactly the batch's last real tokens of the row.
        length = int(batch["attention_mask"][i].sum())
        assert batch["input_ids"][i, length - len(kept) : length].tolist() == kept
        assert (labels[: length - len(kept)] == IGNORE_INDEX).all()
        assert (labels[length:] == IGNORE_INDEX).all()
    assert "pixel_values" in batch and "image_grid_thw" in batch
