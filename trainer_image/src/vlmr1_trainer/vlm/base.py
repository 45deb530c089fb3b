"""The model-family interface: everything the trainer needs to know about one VLM family.

A family names its transformers model class, the module paths of its vision tower (frozen
in ``freezeVision``, never given LoRA adapters) and of its language model (where LoRA goes),
its question templates, its box convention and the dataset columns that convention needs.
Loading goes through ``from_pretrained``/``AutoProcessor`` for every uri form
(:func:`vlmr1_trainer.storage.resolve_model`).

Import-light: torch, transformers and peft are imported inside the methods that use them.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from vlmr1_core.config import LoraSpec, ModelFamily, Task
from vlmr1_trainer.vlm.boxes import BoxConvention, Size
from vlmr1_trainer.vlm.prompts import QUESTION_TEMPLATES, build_prompt

if TYPE_CHECKING:
    from peft import LoraConfig
    from torch import nn
    from transformers import PreTrainedModel, ProcessorMixin

    from vlmr1_trainer.storage import ModelSource

__all__ = ["VLMFamily", "resolve_attn_implementation"]

log = logging.getLogger(__name__)

FLASH_ATTENTION_2 = "flash_attention_2"


def resolve_attn_implementation(requested: str | None) -> str | None:
    """The attention kernel to load a model with on this machine (``model.attnImplementation``).

    flash_attention_2 needs the flash-attn package and a CUDA device. Unset, it is chosen when
    both are there (VLM-R1's scripts ask for it), else None: transformers' default, sdpa. Asked
    for where it cannot run (a CPU machine, an image without flash-attn), sdpa is used with a
    warning rather than failing the job: the same attention, computed by PyTorch's kernels.
    Other values are passed through.

    >>> resolve_attn_implementation("eager")
    'eager'
    """
    if requested not in (None, FLASH_ATTENTION_2):
        return requested
    from transformers.utils.import_utils import is_flash_attn_2_available

    if is_flash_attn_2_available():
        return FLASH_ATTENTION_2
    if requested == FLASH_ATTENTION_2:
        log.warning(
            "model.attnImplementation flash_attention_2 needs the flash-attn package and a CUDA device, "
            "and this process has not both; using sdpa. Install flash-attn (the trainer image's cuda target "
            "has it) or set attnImplementation: sdpa to silence this."
        )
        return "sdpa"
    return None


def _under(name: str, prefix: str) -> bool:
    # Also true below wrappers that prepend to the name (peft's "base_model.model.").
    return name == prefix or name.startswith(prefix + ".") or f".{prefix}." in f".{name}."


class VLMFamily(ABC):
    """One model family (Qwen2.5-VL, Qwen3-VL, GLM-4.1V, ...). Subclass and register to add one."""

    name: ClassVar[ModelFamily]
    """The family name used in ``model.family`` (see ``vlmr1_core.config.ModelFamily``)."""
    model_class_name: ClassVar[str]
    """The transformers class, e.g. ``Qwen2_5_VLForConditionalGeneration``."""
    vision_modules: ClassVar[tuple[str, ...]]
    """Module paths of the vision tower: frozen by ``freezeVision``, never given adapters."""
    language_model_module: ClassVar[str]
    """Module path of the language model: the only place LoRA adapters go."""
    builtin_models: ClassVar[tuple[str, ...]] = ()
    """``builtin://`` names of this family."""
    default_box_convention: ClassVar[BoxConvention]
    question_templates: ClassVar[Mapping[Task, str]] = QUESTION_TEMPLATES
    completion_prefix: ClassVar[str] = ""
    """What the chat template's generation prompt writes on the model's behalf at the start of
    its turn (Qwen3.5: ``<think>\n``). Rewards score it plus the completion, the answer as the
    model gave it; SFT targets that begin with it lose it, since the prompt already has it."""

    def sft_target(self, target: str) -> str:
        """A sample's answer turn as the text to learn after this family's generation prompt.

        >>> class _Opens(VLMFamily):
        ...     completion_prefix = "<think>"
        ...     def model_input_size(self, image_size, processor): return None
        >>> _Opens.sft_target(_Opens.__new__(_Opens), "<think> look</think><answer>A</answer>")
        'look</think><answer>A</answer>'
        """
        opened = self.completion_prefix.strip()
        if opened and target.lstrip().startswith(opened):
            return target.lstrip()[len(opened) :].lstrip()
        return target

    def __init__(self, box_convention: BoxConvention | None = None) -> None:
        self.box_convention = box_convention or self.default_box_convention

    def __repr__(self) -> str:
        return f"{type(self).__name__}(box_convention={self.box_convention.kind!r})"

    # -- loading -----------------------------------------------------------------------------

    def model_class(self) -> type[PreTrainedModel]:
        """The transformers model class (imports transformers)."""
        import transformers

        cls: type[PreTrainedModel] = getattr(transformers, self.model_class_name)
        return cls

    def resolve(self, source: ModelSource | str, revision: str | None = None) -> ModelSource:
        """A uri (or an already resolved source) as the argument of ``from_pretrained``."""
        from vlmr1_trainer.storage import ModelSource, resolve_model

        return source if isinstance(source, ModelSource) else resolve_model(source, revision)

    def load_model(
        self,
        source: ModelSource | str,
        *,
        revision: str | None = None,
        dtype: Any = None,
        attn_implementation: str | None = None,
        **kwargs: Any,
    ) -> PreTrainedModel:
        """Load the model from a uri with ``from_pretrained`` (unset options are not passed; the
        attention kernel is resolved for this machine by :func:`resolve_attn_implementation`)."""
        from vlmr1_trainer.storage import ModelUnavailableError

        resolved = self.resolve(source, revision)
        options: dict[str, Any] = dict(kwargs)
        if resolved.revision is not None:
            options["revision"] = resolved.revision
        if dtype is not None:
            options["dtype"] = dtype
        attn_implementation = resolve_attn_implementation(attn_implementation)
        if attn_implementation is not None:
            options["attn_implementation"] = attn_implementation
        try:
            model: PreTrainedModel = self.model_class().from_pretrained(resolved.pretrained, **options)
        except OSError as exc:  # transformers' way of saying the files cannot be had
            raise ModelUnavailableError.from_load(resolved, exc) from exc
        return model

    def load_processor(
        self,
        source: ModelSource | str,
        *,
        revision: str | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
    ) -> ProcessorMixin:
        """Load the processor with ``AutoProcessor``, then apply the pixel bounds.

        The bounds are ignored for builtin models: their processors keep the tiny images
        they were built for (a default ``maxPixels`` would make them slow for nothing).
        """
        from transformers import AutoProcessor

        import vlmr1_core.processors  # noqa: F401 (registers the builtin processors)
        from vlmr1_trainer.storage import ModelUnavailableError

        resolved = self.resolve(source, revision)
        options = {"revision": resolved.revision} if resolved.revision is not None else {}
        try:
            processor: ProcessorMixin = AutoProcessor.from_pretrained(  # type: ignore[no-untyped-call]
                resolved.pretrained, **options
            )
        except OSError as exc:
            raise ModelUnavailableError.from_load(resolved, exc) from exc
        if not hasattr(processor, "image_processor"):
            raise ModelUnavailableError(
                f"{resolved.uri}: AutoProcessor returned {type(processor).__name__}, not a multimodal processor",
                fix="use a vision-language checkpoint (one with a processor_config.json)",
            )
        if resolved.kind != "builtin":
            self.set_pixel_bounds(processor, min_pixels, max_pixels)
        return processor

    def set_pixel_bounds(self, processor: Any, min_pixels: int | None, max_pixels: int | None) -> None:  # noqa: B027
        """Apply ``model.minPixels``/``maxPixels``; families whose images are not resized by area ignore them."""

    # -- prompts and data --------------------------------------------------------------------

    def question_template(self, task: Task) -> str:
        """The question template for a task (``{Question}`` is replaced by the sample's question)."""
        return self.question_templates[task]

    def build_prompt(self, task: Task, question: str, num_images: int = 1) -> list[dict[str, Any]]:
        """The conversational prompt of one sample (a user turn with image placeholders)."""
        return build_prompt(self.question_template(task), question, num_images)

    @abstractmethod
    def model_input_size(self, image_size: Size, processor: Any) -> Size | None:
        """The ``(W, H)`` the vision tower sees for an image of ``image_size``, if well defined."""

    def dataset_columns(
        self, image_sizes: Sequence[Size], processor: Any, original_size: Size | None = None
    ) -> dict[str, Any]:
        """Columns this family adds to a sample with images of ``image_sizes`` (``(W, H)`` each).

        The box rescale uses the first image, as VLM-R1 does for multi-image samples; a
        sample without images gets ``None`` values so every row has the same keys.
        ``original_size`` is the size the ground truth refers to when the image was resized
        before the processor saw it (VLM-R1 upscales images under 28 px); default: the first size.
        """
        if not self.box_convention.adds_columns:
            return {}
        if not image_sizes:
            return self.box_convention.columns(None, None)
        first = (int(image_sizes[0][0]), int(image_sizes[0][1]))
        input_size = (
            self.model_input_size(first, processor) if self.box_convention.kind == "model_input_pixels" else None
        )
        return self.box_convention.columns(original_size or first, input_size)

    # -- parameters ----------------------------------------------------------------------------

    def is_vision_parameter(self, name: str) -> bool:
        """Whether a parameter (or module) name belongs to the vision tower."""
        return any(_under(name, prefix) for prefix in self.vision_modules)

    def vision_parameter_names(self, model: nn.Module) -> list[str]:
        """Names of every vision-tower parameter of ``model``."""
        return [name for name, _ in model.named_parameters() if self.is_vision_parameter(name)]

    def freeze_vision(self, model: nn.Module) -> list[str]:
        """Stop gradients into the vision tower (VLM-R1's ``freeze_vision_modules``); returns the frozen names."""
        frozen = []
        for name, param in model.named_parameters():
            if self.is_vision_parameter(name):
                param.requires_grad_(False)
                frozen.append(name)
        if not frozen:
            raise ValueError(f"no parameter of {type(model).__name__} is under {self.vision_modules}")
        return frozen

    def lora_target_modules(self, suffixes: Iterable[str]) -> str:
        """A peft ``target_modules`` regex: modules ending in a suffix, inside the language model only.

        peft full-matches a string ``target_modules`` against module names, so the vision
        tower's own ``q_proj``/``gate_proj`` layers (several families have them) get no adapter.
        """
        names = sorted({s.strip(".") for s in suffixes if s.strip(".")})
        if not names:
            raise ValueError("LoRA needs at least one target module suffix")
        alternatives = "|".join(re.escape(n) for n in names)
        return rf"(?:.*\.)?{re.escape(self.language_model_module)}\.(?:.*\.)?(?:{alternatives})"

    def lora_config(self, spec: LoraSpec | None = None) -> LoraConfig:
        """The peft ``LoraConfig`` for a ``finetuning.lora`` spec (defaults when None)."""
        from peft import LoraConfig

        spec = spec or LoraSpec()
        return LoraConfig(
            r=spec.r,
            lora_alpha=spec.alpha,
            lora_dropout=spec.dropout,
            target_modules=self.lora_target_modules(spec.target_modules),
            task_type="CAUSAL_LM",
        )
