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


class _MergingProcessor:
    """Characters as tokens, except that "ab" is one token (99): a merge across any boundary."""

    eos_token = "$"

    def __init__(self) -> None:
        self.tokenizer = self
        self.prompt_passes = 0

    def apply_chat_template(self, messages: list[dict[str, str]], **_: object) -> str:
        return messages[0]["content"]

    def _ids(self, text: str) -> list[int]:
        return [ord(c) for c in text.replace("ab", chr(99))]

    def __call__(self, text: list[str], add_special_tokens: bool = True, **kwargs: object) -> dict[str, object]:
        import torch

        if "return_tensors" not in kwargs:  # the target alone
            return {"input_ids": [self._ids(t) for t in text]}
        if not any(t.endswith("$") for t in text):
            self.prompt_passes += 1
        ids = [self._ids(t) for t in text]
        width = max(map(len, ids))
        return {
            "input_ids": torch.tensor([row + [0] * (width - len(row)) for row in ids]),
            "attention_mask": torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids]),
        }


def test_a_target_merged_across_the_boundary_falls_back_to_the_prompt_pass() -> None:
    """When the tokenizer joins the prompt's last characters with the target's first, the
    target tokenised alone is not the row's tail; the prompt processed alone says where it starts."""
    processor = _MergingProcessor()
    collate = SupervisedCollator(processor)
    rows = [{"prompt": [{"content": "xya"}], "target": "bz"}, {"prompt": [{"content": "x"}], "target": "yz"}]
    batch = collate(rows)
    assert processor.prompt_passes == 1
    # Row 0 is "x y [ab] z $": the prompt alone ("x y a") is three tokens, so labels start after them.
    assert batch["labels"].tolist() == [
        [-100, -100, -100, ord("z"), ord("$")],
        [-100, ord("y"), ord("z"), ord("$"), -100],
    ]
    # Without a merge no prompt pass is needed.
    collate([rows[1]])
    assert processor.prompt_passes == 1
