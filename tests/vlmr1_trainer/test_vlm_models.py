"""The tiny builtin models through the family interface: prompt, generate, train, freeze, LoRA."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from vlmr1_core.config import LoraSpec
from vlmr1_trainer.vlm import VLMFamily, get_family

FAMILIES = {"qwen2.5-vl": "tiny-qwen2.5-vl", "internvl": "tiny-internvl"}
QUESTION = "Please provide the bounding box coordinate of the region this sentence describes: the red square."


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("vlmr1-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VLMR1_CACHE_DIR", str(root))
        yield root


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def loaded(request: pytest.FixtureRequest, cache: Path) -> tuple[VLMFamily, Any, Any]:
    from vlmr1_trainer.storage import resolve_model

    family = get_family(request.param)
    source = resolve_model(f"builtin://{FAMILIES[request.param]}")
    assert source.kind == "builtin" and Path(source.pretrained).is_relative_to(cache)
    return family, family.load_model(source), family.load_processor(source)


def _image() -> Image.Image:
    image = Image.new("RGB", (100, 60), (240, 240, 240))
    image.paste((220, 20, 20), (10, 10, 40, 30))
    return image


def _inputs(family: VLMFamily, processor: Any, image: Image.Image) -> Any:
    prompt = family.build_prompt("rec", QUESTION, num_images=1)
    text = processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    assert "Output the final answer in JSON format." in text
    return processor(text=[text], images=[image], return_tensors="pt")


def test_rec_prompt_with_image_generates(loaded: tuple[VLMFamily, Any, Any]) -> None:
    family, model, processor = loaded
    inputs = _inputs(family, processor, _image())
    image_token = model.config.image_token_id
    assert int((inputs["input_ids"] == image_token).sum()) > 0  # the chat template placed image tokens
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape == (1, inputs["input_ids"].shape[1] + 4)
    completion = processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert isinstance(completion[0], str)


def test_forward_backward_reaches_vision_and_language(loaded: tuple[VLMFamily, Any, Any]) -> None:
    family, model, processor = loaded
    inputs = _inputs(family, processor, _image())
    model.zero_grad()
    loss = model(**inputs, labels=inputs["input_ids"]).loss
    assert torch.isfinite(loss)
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert any(family.is_vision_parameter(name) for name in grads)
    assert any(name.startswith(family.language_model_module) for name in grads)
    model.zero_grad()


def test_vision_names_cover_the_vision_tower_and_freezing_leaves_the_rest(
    loaded: tuple[VLMFamily, Any, Any],
) -> None:
    family, model, _ = loaded
    vision = set(family.vision_parameter_names(model))
    tower = {n for n, _ in model.named_parameters() if n.startswith(("model.visual.", "model.vision_tower."))}
    assert vision == tower and vision
    try:
        frozen = family.freeze_vision(model)
        assert set(frozen) == vision
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable == {n for n, _ in model.named_parameters()} - vision
        # Qwen's merger is inside model.visual; InternVL keeps its projector trainable (as VLM-R1).
        allowed = ("model.language_model.", "lm_head.", "model.multi_modal_projector.")
        assert all(n.startswith(allowed) for n in trainable)
        assert any(n.startswith("model.language_model.") for n in trainable)
    finally:
        for p in model.parameters():
            p.requires_grad_(True)


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # raised inside peft
def test_lora_adapters_only_on_language_model_linears(loaded: tuple[VLMFamily, Any, Any]) -> None:
    import copy

    from peft import get_peft_model

    family, model, _ = loaded
    spec = LoraSpec(r=4, alpha=8)
    config = family.lora_config(spec)
    assert (config.r, config.lora_alpha, config.lora_dropout) == (4, 8, spec.dropout)
    # The vision towers have q_proj/k_proj/v_proj (InternVL) or gate/up/down_proj (Qwen) too.
    vision_suffixes = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules() if family.is_vision_parameter(n)}
    assert vision_suffixes & set(spec.target_modules)
    peft_model = get_peft_model(copy.deepcopy(model), config)
    adapted = {n.split(".lora_A")[0] for n, _ in peft_model.named_parameters() if ".lora_A." in n}
    expected_layers = model.config.text_config.num_hidden_layers * len(spec.target_modules)
    assert len(adapted) == expected_layers
    assert all(".model.language_model." in n for n in adapted)
    lora_params = [n for n, _ in peft_model.named_parameters() if "lora_" in n]
    assert lora_params and not any(family.is_vision_parameter(n) for n in lora_params)
    assert {n for n, p in peft_model.named_parameters() if p.requires_grad} == set(lora_params)


def test_qwen_input_size_is_what_the_vision_tower_sees(cache: Path) -> None:
    family = get_family("qwen2.5-vl")
    processor = family.load_processor(f"builtin://{FAMILIES['qwen2.5-vl']}", revision=None)
    patch = processor.image_processor.patch_size
    for size in [(100, 60), (33, 250), (640, 480), (28, 28)]:
        grid = processor.image_processor(Image.new("RGB", size), return_tensors="pt")["image_grid_thw"][0]
        columns = family.dataset_columns([size], processor)
        assert columns == {"image_size": list(size), "input_size": [patch * int(grid[2]), patch * int(grid[1])]}


def test_internvl_columns_are_normalized_frame() -> None:
    family = get_family("internvl")
    assert family.dataset_columns([(640, 480), (10, 10)], None) == {
        "image_size": [640, 480],
        "input_size": [1000, 1000],
    }
    assert family.dataset_columns([], None) == {"image_size": None, "input_size": None}


def test_pixel_bounds_apply_to_real_models_only(cache: Path) -> None:
    family = get_family("qwen2.5-vl")
    builtin = family.load_processor(f"builtin://{FAMILIES['qwen2.5-vl']}", min_pixels=784, max_pixels=10**7)
    assert builtin.image_processor.size["longest_edge"] == 112 * 112
    # The same files as a plain local checkpoint: the spec's bounds are applied.
    local = family.load_processor(str(cache / "builtin" / FAMILIES["qwen2.5-vl"]), min_pixels=784, max_pixels=56 * 56)
    assert (local.image_processor.size["shortest_edge"], local.image_processor.size["longest_edge"]) == (784, 3136)
    width, height = family.dataset_columns([(640, 480)], local)["input_size"]
    assert width * height <= 56 * 56 and width % 28 == 0 and height % 28 == 0 and width > height


def test_load_vlm_from_a_model_spec(cache: Path) -> None:
    from vlmr1_core.config import ModelSpec
    from vlmr1_trainer.vlm import load_vlm

    loaded = load_vlm(ModelSpec(uri="builtin://tiny-internvl", attn_implementation="eager"), dtype=torch.float32)
    assert loaded.family.name == "internvl" and loaded.source.kind == "builtin"
    assert type(loaded.model).__name__ == "InternVLForConditionalGeneration"
    assert loaded.model.config._attn_implementation == "eager"
    assert type(loaded.processor).__name__ == "TinyInternVLProcessor"


def test_flash_attention_falls_back_to_sdpa_where_it_cannot_run(cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    # An image without flash-attn (or a CPU machine) still trains a spec that asks for it,
    # as examples/grpojob-rec.yaml does: with sdpa, and a warning naming the fix.
    from vlmr1_core.config import ModelSpec
    from vlmr1_trainer.vlm import load_vlm

    with caplog.at_level("WARNING", logger="vlmr1_trainer.vlm.base"):
        loaded = load_vlm(
            ModelSpec(uri="builtin://tiny-qwen2.5-vl", attn_implementation="flash_attention_2"), dtype=torch.float32
        )
    assert loaded.model.config._attn_implementation == "sdpa"
    assert "flash-attn" in caplog.text and "attnImplementation: sdpa" in caplog.text


@pytest.mark.parametrize(
    ("requested", "flash_available", "expected"),
    [
        (None, False, None),  # transformers' default (sdpa)
        (None, True, "flash_attention_2"),  # VLM-R1's choice where it can run
        ("flash_attention_2", True, "flash_attention_2"),
        ("flash_attention_2", False, "sdpa"),
        ("sdpa", True, "sdpa"),
        ("eager", False, "eager"),
    ],
)
def test_attention_kernel_resolution(
    requested: str | None, flash_available: bool, expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers.utils.import_utils

    from vlmr1_trainer.vlm.base import resolve_attn_implementation

    monkeypatch.setattr(transformers.utils.import_utils, "is_flash_attn_2_available", lambda: flash_available)
    assert resolve_attn_implementation(requested) == expected
