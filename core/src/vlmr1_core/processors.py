"""Processor classes of the builtin tiny models (imports transformers: load lazily).

The stock Qwen2.5-VL and InternVL processors insist on a video processor, and
transformers' video processors need torchvision, which the CPU test environment must
not have (its PyPI build is CUDA-linked and breaks the image processors). These
subclasses drop the video processor from the constructor signature, which is where
``ProcessorMixin`` reads a processor's parts from.

They are registered with ``AutoProcessor`` under a private config class: the saved
``processor_config.json`` names them, ``AutoProcessor.from_pretrained`` finds a
registered class by that name, and the mapping of the real Qwen2.5-VL and InternVL
configs to their stock processors is left untouched. Without a registration
``AutoProcessor`` falls back, silently, to a bare tokenizer.
"""

from __future__ import annotations

from typing import Any

from transformers import (
    AutoProcessor,
    Glm4vProcessor,
    InternVLProcessor,
    PretrainedConfig,
    Qwen2_5_VLProcessor,
    Qwen3VLProcessor,
)

__all__ = ["TinyGlm4vProcessor", "TinyInternVLProcessor", "TinyQwen2_5_VLProcessor", "TinyQwen3VLProcessor"]


class TinyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):  # noqa: N801 (transformers' naming)
    """Qwen2.5-VL processor without a video processor (images only)."""

    def __init__(
        self, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)  # type: ignore[no-untyped-call]


class TinyQwen3VLProcessor(Qwen3VLProcessor):
    """Qwen3-VL (and Qwen3.5) processor without a video processor (images only)."""

    def __init__(
        self, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)  # type: ignore[no-untyped-call]


class TinyGlm4vProcessor(Glm4vProcessor):
    """GLM-4.1V processor without a video processor (images only)."""

    def __init__(
        self, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)  # type: ignore[no-untyped-call]


class TinyInternVLProcessor(InternVLProcessor):
    """InternVL processor without a video processor (images only)."""

    def __init__(
        self,
        image_processor: Any = None,
        tokenizer: Any = None,
        image_seq_length: int = 256,
        chat_template: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            image_processor, tokenizer, None, image_seq_length=image_seq_length, chat_template=chat_template, **kwargs
        )


class _TinyProcessorKey(PretrainedConfig):  # type: ignore[no-untyped-call]
    """Never instantiated: only the key the tiny processors are registered under."""

    model_type = "vlmr1-tiny-processor-key"


class _TinyInternVLProcessorKey(PretrainedConfig):  # type: ignore[no-untyped-call]
    model_type = "vlmr1-tiny-internvl-processor-key"


class _TinyQwen3VLProcessorKey(PretrainedConfig):  # type: ignore[no-untyped-call]
    model_type = "vlmr1-tiny-qwen3-vl-processor-key"


class _TinyGlm4vProcessorKey(PretrainedConfig):  # type: ignore[no-untyped-call]
    model_type = "vlmr1-tiny-glm4v-processor-key"


AutoProcessor.register(_TinyProcessorKey, TinyQwen2_5_VLProcessor, exist_ok=True)  # type: ignore[no-untyped-call]
AutoProcessor.register(_TinyQwen3VLProcessorKey, TinyQwen3VLProcessor, exist_ok=True)  # type: ignore[no-untyped-call]
AutoProcessor.register(_TinyGlm4vProcessorKey, TinyGlm4vProcessor, exist_ok=True)  # type: ignore[no-untyped-call]
AutoProcessor.register(_TinyInternVLProcessorKey, TinyInternVLProcessor, exist_ok=True)  # type: ignore[no-untyped-call]
