"""Vision-language model families behind one interface (see docs/adding-a-model.md).

>>> from vlmr1_trainer.vlm import get_family
>>> family = get_family("qwen2.5-vl")
>>> family.vision_modules
('model.visual',)
>>> family.build_prompt("rec", "Where is the dog?")[0]["content"][0]
{'type': 'image'}

Import-light: nothing here imports torch, transformers or peft; the methods that load or
change models do, when called.
"""

from __future__ import annotations

from vlmr1_trainer.vlm.base import VLMFamily
from vlmr1_trainer.vlm.boxes import MODEL_INPUT_PIXELS, NORMALIZED_1000, ORIGINAL_PIXELS, BoxConvention, rescale_box
from vlmr1_trainer.vlm.prompts import QUESTION_TEMPLATES, build_prompt, format_question
from vlmr1_trainer.vlm.registry import (
    LoadedVLM,
    UnknownFamilyError,
    family_names,
    get_family,
    load_vlm,
    register_family,
)

__all__ = [
    "MODEL_INPUT_PIXELS",
    "NORMALIZED_1000",
    "ORIGINAL_PIXELS",
    "QUESTION_TEMPLATES",
    "BoxConvention",
    "LoadedVLM",
    "UnknownFamilyError",
    "VLMFamily",
    "build_prompt",
    "family_names",
    "format_question",
    "get_family",
    "load_vlm",
    "register_family",
    "rescale_box",
]
