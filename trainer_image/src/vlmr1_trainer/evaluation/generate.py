"""Batched greedy generation for evaluation: deterministic, left-padded, one processor call per batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def greedy_generate(
    model: Any,
    processor: Any,
    rows: Sequence[dict[str, Any]],
    *,
    batch_size: int,
    max_new_tokens: int,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """The completion of every row's ``prompt`` (chat messages) over its ``images``, in order.

    Greedy decoding (VLM-R1 evaluates with ``do_sample=False``), so a checkpoint's metrics are
    reproducible. Prompts are left-padded, the side decoder-only generation continues from.
    ``on_batch(n)`` is called after each batch of ``n`` rows (a progress bar).
    """
    import torch

    tokenizer = getattr(processor, "tokenizer", processor)
    device = next(model.parameters()).device
    completions: list[str] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            texts = [
                processor.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in batch
            ]
            images = [list(r["images"]) for r in batch]
            inputs = processor(
                text=texts,
                images=images if any(images) else None,
                padding=True,
                padding_side="left",
                return_tensors="pt",
            ).to(device)
            with torch.inference_mode():
                output = model.generate(
                    **inputs,
                    do_sample=False,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                )
            new_tokens = output[:, inputs["input_ids"].shape[1] :]
            completions += tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            if on_batch is not None:
                on_batch(len(batch))
    finally:
        model.train(was_training)
    return completions
