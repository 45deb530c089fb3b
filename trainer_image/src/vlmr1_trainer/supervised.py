"""Supervised fine-tuning batches: the prompt as GRPO sees it, the sample's answer turn as the target.

SFT and GRPO read the same VLM-R1 JSONL and build the same prompt (the family's chat template
over the task's question template), so an SFT checkpoint answers the prompts GRPO will ask it.
The target is the sample's whole gpt turn (``Sample.target``) followed by the end-of-turn
token; the loss covers those tokens only.

>>> masked_labels([[5, 6, 7, 8, 0]], prompt_lengths=[2], lengths=[4], ignore=-100)
[[-100, -100, 7, 8, -100]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

IGNORE_INDEX = -100
"""The label cross-entropy skips (transformers' and torch's convention)."""


def masked_labels(
    input_ids: Sequence[Sequence[int]], *, prompt_lengths: Sequence[int], lengths: Sequence[int], ignore: int
) -> list[list[int]]:
    """Labels for right-padded rows: ``ignore`` over each prompt and the padding, the ids elsewhere."""
    labels = []
    for ids, start, end in zip(input_ids, prompt_lengths, lengths, strict=True):
        labels.append([ignore if i < start or i >= end else int(t) for i, t in enumerate(ids)])
    return labels


class SupervisedCollator:
    """A data collator: TRL rows (``prompt`` messages, ``images``, ``target``) -> a model batch.

    Rows are right-padded; ``labels`` are the target tokens (and the end-of-turn token) only.
    The target is tokenised alone (text only, cheap) and must be exactly the row's last tokens;
    when a tokenizer merges across the prompt/target boundary and it is not, the prompts are
    processed alone instead (images again) to find where each target starts.
    """

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)

    def _encode(self, texts: list[str], images: list[list[Any]] | None) -> Any:
        return self.processor(text=texts, images=images, padding=True, padding_side="right", return_tensors="pt")

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        prompts = [
            self.processor.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in rows
        ]
        eos = self.tokenizer.eos_token or ""
        targets = [r["target"] + eos for r in rows]
        images = [list(r.get("images") or []) for r in rows]
        image_arg = images if any(images) else None
        batch = self._encode([p + t for p, t in zip(prompts, targets, strict=True)], image_arg)
        input_ids = batch["input_ids"].tolist()
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        target_ids = self.tokenizer(targets, add_special_tokens=False)["input_ids"]
        prompt_lengths = [end - len(ids) for end, ids in zip(lengths, target_ids, strict=True)]
        rows_ids = zip(input_ids, prompt_lengths, lengths, target_ids, strict=True)
        if any(row[start:end] != ids for row, start, end, ids in rows_ids):
            prompt_lengths = self._encode(prompts, image_arg)["attention_mask"].sum(dim=1).tolist()
        labels = masked_labels(input_ids, prompt_lengths=prompt_lengths, lengths=lengths, ignore=IGNORE_INDEX)
        batch["labels"] = torch.tensor(labels, dtype=torch.long)
        return dict(batch)
