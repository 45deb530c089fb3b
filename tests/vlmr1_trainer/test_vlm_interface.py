"""The family interface without models: registry, prompts, box maths, LoRA targets, import cost."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from vlmr1_trainer.vlm import (
    MODEL_INPUT_PIXELS,
    NORMALIZED_1000,
    ORIGINAL_PIXELS,
    UnknownFamilyError,
    VLMFamily,
    family_names,
    get_family,
    register_family,
    rescale_box,
)
from vlmr1_trainer.vlm.internvl import InternVLFamily
from vlmr1_trainer.vlm.prompts import DEFAULT_TEMPLATE, DETECTION_TEMPLATE, REC_TEMPLATE
from vlmr1_trainer.vlm.qwen2_5_vl import Qwen2_5_VLFamily


def test_registry_knows_every_family() -> None:
    assert family_names() == ["glm4.1v", "internvl", "qwen2.5-vl", "qwen3-vl", "qwen3.5"]
    qwen, internvl = get_family("qwen2.5-vl"), get_family("internvl")
    assert isinstance(qwen, Qwen2_5_VLFamily) and qwen.model_class_name == "Qwen2_5_VLForConditionalGeneration"
    assert isinstance(internvl, InternVLFamily) and internvl.model_class_name == "InternVLForConditionalGeneration"
    assert qwen.box_convention is MODEL_INPUT_PIXELS and internvl.box_convention is NORMALIZED_1000


def test_unknown_family_lists_known_ones() -> None:
    known = r"known: glm4\.1v, internvl, qwen2\.5-vl, qwen3-vl, qwen3\.5"
    with pytest.raises(UnknownFamilyError, match=r"unknown model family 'llava'; " + known):
        get_family("llava")


def test_register_family_rejects_duplicates_and_checks_the_type(monkeypatch: pytest.MonkeyPatch) -> None:
    from vlmr1_trainer.vlm import registry

    monkeypatch.setattr(registry, "_FAMILIES", dict(registry._FAMILIES))
    with pytest.raises(ValueError, match="already registered"):
        register_family("internvl", InternVLFamily)
    register_family("pixels", lambda: InternVLFamily(box_convention=ORIGINAL_PIXELS))
    assert get_family("pixels").box_convention is ORIGINAL_PIXELS
    register_family("broken", object)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a VLMFamily"):
        get_family("broken")


def test_rec_prompt_is_vlm_r1s_json_variant() -> None:
    prompt = get_family("qwen2.5-vl").build_prompt("rec", "Where is {the} dog?", num_images=1)
    assert prompt == [
        {
            "role": "user",
            "content": [
                {"type": "image"},
                {
                    "type": "text",
                    "text": "Where is {the} dog? First output the thinking process in <think> </think> tags and "
                    "then output the final answer in <answer> </answer> tags. Output the final answer in JSON format.",
                },
            ],
        }
    ]


@pytest.mark.parametrize(
    ("task", "template"),
    [("rec", REC_TEMPLATE), ("ovd", DETECTION_TEMPLATE), ("math", DEFAULT_TEMPLATE), ("gui", DEFAULT_TEMPLATE)],
)
def test_templates_per_task(task: str, template: str) -> None:
    for family in (get_family("qwen2.5-vl"), get_family("internvl")):
        assert family.question_template(task) == template  # type: ignore[arg-type]
        assert "<think> </think>" in template and "<answer> </answer>" in template
    gui = get_family("internvl").build_prompt("gui", "Find the defect.", num_images=2)
    assert [c["type"] for c in gui[0]["content"]] == ["image", "image", "text"]
    assert DETECTION_TEMPLATE.endswith("\n{Question}")


def test_qwen_rescale_matches_hand_computation() -> None:
    # A 1000x500 original resized to 532x266 model input (multiples of 28). The model says
    # [133, 66, 266, 133]; by hand: 133/532*1000 = 250, 66/266*500 = 124.0601..., 266/532*1000
    # = 500, 133/266*500 = 250.
    box = MODEL_INPUT_PIXELS.to_original([133, 66, 266, 133], image_size=(1000, 500), input_size=(532, 266))
    assert box[0] == 250.0 and box[2] == 500.0 and box[3] == 250.0
    assert box[1] == pytest.approx(124.06015037593985, abs=1e-12)
    # Division first, as VLM-R1: x / W_in * W_orig (not x * W_orig / W_in).
    assert rescale_box([7, 0, 0, 0], (3, 1), (9, 1))[0] == 7 / 9 * 3
    assert MODEL_INPUT_PIXELS.columns((1000, 500), (532, 266)) == {"image_size": [1000, 500], "input_size": [532, 266]}
    assert MODEL_INPUT_PIXELS.from_original([250, 0, 500, 250], (1000, 500), (532, 266)) == [133.0, 0.0, 266.0, 133.0]
    with pytest.raises(ValueError, match="model-input size"):
        MODEL_INPUT_PIXELS.to_original([1, 2, 3, 4], (10, 10))


def test_rescale_agrees_with_the_rec_iou_reward() -> None:
    from vlmr1_trainer.rewards.rec import RecIouReward

    columns = MODEL_INPUT_PIXELS.columns((1000, 500), (532, 266))
    completion = '<think>x</think><answer>{"bbox_2d": [133, 133, 266, 266]}</answer>'
    gt = [int(v) for v in MODEL_INPUT_PIXELS.to_original([133, 133, 266, 266], (1000, 500), (532, 266))]
    assert gt == [250, 250, 500, 500]
    score = RecIouReward()([completion], solution=[f"<answer> {gt} </answer>"], **{k: [v] for k, v in columns.items()})
    assert score == [1.0]


def test_normalized_and_original_pixel_conventions() -> None:
    assert NORMALIZED_1000.to_original([100, 500, 1000, 1000], (640, 480)) == [64.0, 240.0, 640.0, 480.0]
    assert NORMALIZED_1000.columns((640, 480), None) == {"image_size": [640, 480], "input_size": [1000, 1000]}
    assert ORIGINAL_PIXELS.columns((640, 480), (28, 28)) == {}
    assert ORIGINAL_PIXELS.to_original([1, 2, 3, 4], (640, 480)) == [1.0, 2.0, 3.0, 4.0]
    assert get_family("qwen2.5-vl").dataset_columns([], None) == {"image_size": None, "input_size": None}
    assert InternVLFamily(box_convention=ORIGINAL_PIXELS).dataset_columns([(5, 5)], None) == {}


@pytest.mark.parametrize("family_name", ["qwen2.5-vl", "internvl"])
def test_lora_target_regex_matches_language_model_linears_only(family_name: str) -> None:
    family: VLMFamily = get_family(family_name)
    pattern = family.lora_target_modules(["q_proj", "gate_proj", "down_proj"])
    assert re.fullmatch(pattern, "model.language_model.layers.3.self_attn.q_proj")
    assert re.fullmatch(pattern, "model.language_model.layers.0.mlp.gate_proj")
    assert not re.fullmatch(pattern, "model.language_model.layers.3.self_attn.k_proj")
    assert not re.fullmatch(pattern, "model.language_model.layers.3.self_attn.q_proj.lora_A")
    assert not re.fullmatch(pattern, "lm_head")
    for vision in (
        "model.visual.blocks.0.mlp.gate_proj",
        "model.vision_tower.encoder.layer.0.attention.q_proj",
        "model.multi_modal_projector.linear_1",
    ):
        assert not re.fullmatch(pattern, vision)
    with pytest.raises(ValueError, match="at least one"):
        family.lora_target_modules([])


def test_vision_parameter_names_survive_wrapper_prefixes() -> None:
    qwen, internvl = get_family("qwen2.5-vl"), get_family("internvl")
    assert qwen.is_vision_parameter("base_model.model.model.visual.merger.mlp.0.weight")
    assert qwen.is_vision_parameter("model.visual")
    assert not qwen.is_vision_parameter("model.visualizer.weight")
    assert not qwen.is_vision_parameter("model.language_model.layers.0.mlp.gate_proj.weight")
    assert internvl.is_vision_parameter("model.vision_tower.embeddings.cls_token")
    assert not internvl.is_vision_parameter("model.multi_modal_projector.linear_1.weight")


def test_light_modules_do_not_import_torch() -> None:
    code = (
        "import sys, vlmr1_trainer.vlm, vlmr1_core.checkpoints, vlmr1_trainer.storage, "
        "vlmr1_cli.checkpoints, vlmr1_trainer.vlm.builtin;"
        "from vlmr1_trainer.vlm import get_family; get_family('qwen2.5-vl'); get_family('internvl');"
        "heavy = sorted(m for m in ('torch', 'transformers', 'peft', 'PIL') if m in sys.modules);"
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


@pytest.mark.parametrize(
    "module", ["vlmr1_trainer.vlm", "vlmr1_trainer.vlm.base", "vlmr1_trainer.vlm.boxes", "vlmr1_trainer.vlm.prompts"]
)
def test_docstring_examples(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0
