"""VLM-R1's question templates and the conversational prompt TRL's GRPOTrainer consumes.

The templates are VLM-R1's (``get_question_template`` of its Qwen module): the
think-then-answer instruction, its REC variant that asks for a JSON answer (``rec_format``
and ``rec_iou`` look for a ``[x1, y1, x2, y2]`` literal inside braces), and the
system-style preamble of its detection (``odLength``) task. Pure Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vlmr1_core.config import Task

__all__ = [
    "DEFAULT_TEMPLATE",
    "DETECTION_TEMPLATE",
    "QUESTION_TEMPLATES",
    "REC_TEMPLATE",
    "build_prompt",
    "format_question",
]

DEFAULT_TEMPLATE = (
    "{Question} First output the thinking process in <think> </think> tags and then output the final answer "
    "in <answer> </answer> tags."
)
"""VLM-R1's instruction for every task without a variant of its own."""

REC_TEMPLATE = DEFAULT_TEMPLATE + " Output the final answer in JSON format."
"""VLM-R1's REC instruction: the box is answered as JSON."""

DETECTION_TEMPLATE = (
    "First thinks about the reasoning process in the mind and then provides the user with the answer. The reasoning "
    "process and answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., "
    "<think> reasoning process here </think><answer> answer here </answer>\n{Question}"
)
"""VLM-R1's open-vocabulary detection (odLength) instruction, a preamble before the question."""

QUESTION_TEMPLATES: Mapping[Task, str] = {
    "rec": REC_TEMPLATE,
    "ovd": DETECTION_TEMPLATE,
    "math": DEFAULT_TEMPLATE,
    "gui": DEFAULT_TEMPLATE,
    "mcq": DEFAULT_TEMPLATE,
    "custom": DEFAULT_TEMPLATE,
}


def format_question(template: str, question: str) -> str:
    """Fill ``{Question}``; other braces in the question are kept as they are.

    >>> format_question("Q: {Question} Answer in JSON.", 'Where is {"the": "dog"}?')
    'Q: Where is {"the": "dog"}? Answer in JSON.'
    """
    # str.format would also interpret braces the template does not have; replace is exact.
    return template.replace("{Question}", question)


def build_prompt(template: str, question: str, num_images: int) -> list[dict[str, Any]]:
    """One user turn: ``num_images`` image placeholders, then the filled template.

    TRL's GRPOTrainer fills the placeholders from the sample's ``images`` column (in order)
    and applies the processor's chat template, which inserts the family's image tokens.
    """
    if num_images < 0:
        raise ValueError(f"num_images must be >= 0, got {num_images}")
    content: list[dict[str, Any]] = [{"type": "image"} for _ in range(num_images)]
    content.append({"type": "text", "text": format_question(template, question)})
    return [{"role": "user", "content": content}]
