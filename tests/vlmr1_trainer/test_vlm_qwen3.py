"""Qwen3-VL and Qwen3.5 through the family interface, on the offline ``builtin://tiny-qwen3-vl`` and
``builtin://tiny-qwen3.5``: build, load, prompt, generate, freeze, LoRA, GRPO steps (full / LoRA /
freezeVision, multi-image), checkpoint + resume, ``vlmr1 eval``, and the 0..1000 boxes both
families answer, scored by ``rec_iou`` against original-pixel ground truth."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from vlmr1_core.checkpoints import find_resumable, sha256_file, verify_checkpoint
from vlmr1_core.config import LoraSpec, ModelSpec, detect_family
from vlmr1_trainer import rewards
from vlmr1_trainer.train import CHECKPOINTS, RunOptions, train
from vlmr1_trainer.vlm import NORMALIZED_1000, get_family
from vlmr1_trainer.vlm.builtin import BUILTIN_MODELS, MARKER, build_builtin
from vlmr1_trainer.vlm.qwen3_vl import Qwen3Family

from .test_train import SHAPES, CrashAt, StepCounter, config, run_steps

BUILTINS = {"qwen3-vl": "tiny-qwen3-vl", "qwen3.5": "tiny-qwen3.5"}
CLASSES = {"qwen3-vl": "Qwen3VLForConditionalGeneration", "qwen3.5": "Qwen3_5ForConditionalGeneration"}
QUESTION = "Please provide the bounding box coordinate of the region this sentence describes: the red square."
FAMILIES = sorted(BUILTINS)

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning"),  # raised inside peft
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One build of each tiny model for the module (and its subprocesses)."""
    root = tmp_path_factory.mktemp("vlmr1-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VLMR1_CACHE_DIR", str(root))
        yield root


@pytest.fixture(scope="module", params=FAMILIES)
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def family(name: str) -> Qwen3Family:
    family = get_family(name)
    assert isinstance(family, Qwen3Family)
    return family


@pytest.fixture(scope="module")
def loaded(cache: Path, name: str, family: Qwen3Family) -> tuple[Any, Any]:
    from vlmr1_trainer.storage import resolve_model

    source = resolve_model(f"builtin://{BUILTINS[name]}")
    assert source.kind == "builtin" and Path(source.pretrained).is_relative_to(cache)
    return family.load_model(source), family.load_processor(source)


def _image(size: tuple[int, int] = (100, 60)) -> Image.Image:
    image = Image.new("RGB", size, (240, 240, 240))
    image.paste((220, 20, 20), (10, 10, 40, 30))
    return image


def _inputs(family: Qwen3Family, processor: Any, images: Sequence[Image.Image]) -> Any:
    prompt = family.build_prompt("rec", QUESTION, num_images=len(images))
    text = processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    return processor(text=[text], images=images, return_tensors="pt")


# -- the builtins --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_builtin_build_is_deterministic_given_the_seed(name: str, tmp_path: Path) -> None:
    builtin = BUILTINS[name]
    for folder, seed in (("a", 0), ("b", 0), ("c", 1)):
        build_builtin(builtin, tmp_path / folder, seed=seed)
    a, b, c = ({p.name: sha256_file(p) for p in (tmp_path / x).iterdir() if p.is_file()} for x in "abc")
    assert a == b, "the same seed must give the same files, byte for byte"
    assert a["model.safetensors"] != c["model.safetensors"]
    assert a["tokenizer.json"] == c["tokenizer.json"]
    assert {"config.json", "model.safetensors", "processor_config.json", "tokenizer.json", MARKER} <= set(a)
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["architectures"] == [CLASSES[name]]
    assert (saved["text_config"]["num_hidden_layers"], saved["text_config"]["hidden_size"]) == (2, 64)
    assert saved["vision_config"]["depth"] == 2
    if name == "qwen3-vl":
        assert saved["vision_config"]["deepstack_visual_indexes"] == [0]  # valid for depth 2
    else:
        assert saved["text_config"]["layer_types"] == ["linear_attention", "full_attention"]
    processor_config = json.loads((tmp_path / "a" / "processor_config.json").read_text())
    assert processor_config["processor_class"] == "TinyQwen3VLProcessor"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("hf://Qwen/Qwen3-VL-8B-Instruct", "qwen3-vl"),
        ("Qwen/Qwen3-VL-2B-Thinking", "qwen3-vl"),
        ("hf://Qwen/Qwen3-VL-30B-A3B-Instruct", "qwen3-vl"),
        ("builtin://tiny-qwen3-vl", "qwen3-vl"),
        ("s3://models/qwen3_vl-rec/checkpoint-100", "qwen3-vl"),
        ("hf://Qwen/Qwen3.5-2B", "qwen3.5"),
        ("Qwen/Qwen3.5-35B-A3B", "qwen3.5"),
        ("builtin://tiny-qwen3.5", "qwen3.5"),
        ("hf://Qwen/Qwen2.5-VL-3B-Instruct", "qwen2.5-vl"),  # not taken by the Qwen3 patterns
    ],
)
def test_family_is_detected_from_the_uri(uri: str, expected: str) -> None:
    assert detect_family(uri) == expected
    assert ModelSpec(uri=uri).resolved_family == expected


def test_families_name_their_builtins_and_conventions() -> None:
    for name, builtin in BUILTINS.items():
        family = get_family(name)
        assert family.builtin_models == (builtin,) and builtin in BUILTIN_MODELS
        assert family.model_class_name == CLASSES[name]
        assert family.box_convention is NORMALIZED_1000
        assert family.vision_modules == ("model.visual",)
        assert family.language_model_module == "model.language_model"


def test_the_families_and_builtin_module_import_no_torch() -> None:
    # `vlmr1 --help`, the operator and the data checks import the registry.
    code = (
        "import sys, vlmr1_trainer.vlm.builtin_qwen3;"
        "from vlmr1_trainer.vlm import get_family; get_family('qwen3-vl'); get_family('qwen3.5');"
        "print(','.join(sorted(m for m in ('torch', 'transformers', 'peft', 'PIL') if m in sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_family_loads_the_builtin_with_qwens_tokens(name: str, family: Qwen3Family, loaded: tuple[Any, Any]) -> None:
    model, processor = loaded
    assert type(model).__name__ == CLASSES[name]
    assert type(processor).__name__ == "TinyQwen3VLProcessor"
    image_processor = processor.image_processor
    assert type(image_processor).__name__ == "Qwen2VLImageProcessorPil"
    assert (image_processor.patch_size, image_processor.merge_size) == (16, 2)  # Qwen3's 32-pixel factor
    # transformers loads every qwen3_5 checkpoint's tokenizer as Qwen3_5Tokenizer; the build used it too.
    assert type(processor.tokenizer).__name__ == {"qwen3-vl": "Qwen2Tokenizer", "qwen3.5": "Qwen3_5Tokenizer"}[name]
    ids = processor.tokenizer.convert_tokens_to_ids
    config = model.config
    assert (config.image_token_id, config.vision_start_token_id, config.vision_end_token_id) == (
        ids("<|image_pad|>"),
        ids("<|vision_start|>"),
        ids("<|vision_end|>"),
    )
    assert processor.tokenizer.eos_token == "<|im_end|>"
    text = processor.apply_chat_template(family.build_prompt("rec", QUESTION, 1), add_generation_prompt=True)
    assert text.startswith("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>" + QUESTION)  # no system turn
    if name == "qwen3-vl":
        assert text.endswith("Output the final answer in JSON format.<|im_end|>\n<|im_start|>assistant\n")
    else:
        # Qwen3.5's template opens the thinking block unless enable_thinking=False.
        assert text.endswith("<|im_start|>assistant\n<think>\n")
        prompt = family.build_prompt("rec", QUESTION, 1)
        off = processor.apply_chat_template(prompt, add_generation_prompt=True, enable_thinking=False)
        assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_rec_prompt_with_an_image_generates(family: Qwen3Family, loaded: tuple[Any, Any]) -> None:
    model, processor = loaded
    inputs = _inputs(family, processor, [_image()])
    # 100x60 -> 96x64 (multiples of 32 within 64^2..128^2): 6x4 patches of 16 px, 2x2-merged: 6 tokens.
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 6]]
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 6
    assert "mm_token_type_ids" in inputs  # M-RoPE needs it; TRL passes it through
    out = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert out.shape == (1, inputs["input_ids"].shape[1] + 4)
    assert isinstance(processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0], str)


def test_forward_backward_reaches_the_vision_tower_and_the_language_model(
    name: str, family: Qwen3Family, loaded: tuple[Any, Any]
) -> None:
    model, processor = loaded
    inputs = _inputs(family, processor, [_image(), _image((64, 128))])
    model.zero_grad()
    loss = model(**inputs, labels=inputs["input_ids"]).loss
    assert torch.isfinite(loss)
    loss.backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None and bool(p.grad.abs().sum() > 0)}
    model.zero_grad()
    assert any(n.startswith("model.visual.blocks.") for n in grads)
    assert any(n.startswith("model.visual.merger.") for n in grads)  # the projector is on the path
    assert any(n.startswith("model.language_model.layers.1.") for n in grads)
    if name == "qwen3-vl":
        # DeepStack: block 0's features reach the language model through their own merger.
        assert any(n.startswith("model.visual.deepstack_merger_list.0.") for n in grads)
    else:
        # The Gated DeltaNet layer (pure-torch kernels on CPU) is differentiated too.
        assert {"model.language_model.layers.0.linear_attn.A_log"} <= grads
        assert any(".layers.0.linear_attn.in_proj_qkv." in n for n in grads)


def test_save_and_load_round_trip_through_the_family(
    family: Qwen3Family, loaded: tuple[Any, Any], tmp_path: Path
) -> None:
    model, processor = loaded
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    again, processor_again = family.load_model(str(tmp_path)), family.load_processor(str(tmp_path))
    assert type(again) is type(model) and type(processor_again) is type(processor)
    inputs = _inputs(family, processor, [_image()])
    assert torch.equal(inputs["input_ids"], _inputs(family, processor_again, [_image()])["input_ids"])
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, again(**inputs).logits)


@pytest.mark.parametrize(
    ("name", "model_type", "expected"),
    [
        ("qwen3-vl", "qwen3_vl", "Qwen3VLForConditionalGeneration"),
        ("qwen3-vl", "qwen3_vl_moe", "Qwen3VLMoeForConditionalGeneration"),
        ("qwen3.5", "qwen3_5", "Qwen3_5ForConditionalGeneration"),
        ("qwen3.5", "qwen3_5_moe", "Qwen3_5MoeForConditionalGeneration"),
    ],
)
def test_the_moe_checkpoints_load_with_their_own_class(
    name: str, model_type: str, expected: str, tmp_path: Path
) -> None:
    # Loading Qwen3-VL-30B-A3B or Qwen3.5-35B-A3B with the dense class would drop the experts'
    # weights and train random MLPs; the family reads the checkpoint's model_type first.
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    family = get_family(name)
    assert isinstance(family, Qwen3Family)
    assert family.class_name_for(family.resolve(str(tmp_path))) == expected
    # An unreadable config leaves the dense class (from_pretrained then reports the missing files).
    assert family.class_name_for(family.resolve(str(tmp_path / "missing"))) == CLASSES[name]


# -- parameters: freezeVision and LoRA -------------------------------------------------------------


def test_freeze_vision_freezes_exactly_the_vision_tower(family: Qwen3Family, loaded: tuple[Any, Any]) -> None:
    model = copy.deepcopy(loaded[0])
    names = {n for n, _ in model.named_parameters()}
    tower = {n for n in names if n.startswith("model.visual.")}
    assert set(family.vision_parameter_names(model)) == tower
    # The merger (the projector) and Qwen3-VL's DeepStack mergers are inside model.visual.
    assert any(n.startswith("model.visual.merger.") for n in tower)
    assert set(family.freeze_vision(model)) == tower
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == names - tower
    assert all(n.startswith(("model.language_model.", "lm_head.")) for n in trainable)


# What the default LoRA targets adapt in each kind of language-model layer.
FULL_ATTENTION = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"}
MLP = {"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}
LINEAR_ATTENTION = {"linear_attn.in_proj_qkv", "linear_attn.in_proj_z", "linear_attn.out_proj"}


def test_lora_adapters_only_on_language_model_linears(name: str, family: Qwen3Family, loaded: tuple[Any, Any]) -> None:
    from peft import get_peft_model

    model = loaded[0]
    peft_model = get_peft_model(copy.deepcopy(model), family.lora_config(LoraSpec(r=4, alpha=8)))
    adapted = {n.split(".lora_A")[0] for n, _ in peft_model.named_parameters() if ".lora_A." in n}
    assert all(n.startswith("base_model.model.model.language_model.layers.") for n in adapted)

    def layer(i: int) -> set[str]:
        return {n.split(f".layers.{i}.", 1)[1] for n in adapted if f".layers.{i}." in n}

    if name == "qwen3-vl":
        assert layer(0) == layer(1) == FULL_ATTENTION | MLP
    else:
        # Layer 0 is a Gated DeltaNet: its projections stand in for the attention ones (the
        # per-head decay/step projections in_proj_a/in_proj_b are left out); layer 1 is full attention.
        assert layer(0) == LINEAR_ATTENTION | MLP
        assert layer(1) == FULL_ATTENTION | MLP
    lora_params = [n for n, _ in peft_model.named_parameters() if "lora_" in n]
    assert lora_params and not any(family.is_vision_parameter(n) for n in lora_params)
    assert {n for n, p in peft_model.named_parameters() if p.requires_grad} == set(lora_params)


def test_lora_targets_never_match_the_vision_tower(name: str, family: Qwen3Family, loaded: tuple[Any, Any]) -> None:
    # The tower's own linears (qkv, proj, linear_fc1/2 in blocks and mergers), even when named.
    model = loaded[0]
    vision_suffixes = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules() if family.is_vision_parameter(n)}
    assert {"qkv", "proj", "linear_fc1", "linear_fc2"} <= vision_suffixes
    pattern = re.compile(family.lora_target_modules([*LoraSpec().target_modules, "qkv", "proj", "linear_fc1"]))
    vision = [n for n, _ in model.named_modules() if family.is_vision_parameter(n)]
    assert not any(pattern.fullmatch(n) or pattern.fullmatch(f"base_model.model.{n}") for n in vision)
    # Named explicitly, the decay/step projections of the Gated DeltaNet are adapted too.
    explicit = re.compile(family.lora_target_modules(["in_proj_a", "in_proj_b"]))
    linear = [n for n, _ in model.named_modules() if explicit.fullmatch(n)]
    expected = [] if name == "qwen3-vl" else [f"model.language_model.layers.0.linear_attn.in_proj_{x}" for x in "ab"]
    assert sorted(linear) == expected


# -- pixel bounds and boxes --------------------------------------------------------------------------


def test_pixel_bounds_and_the_input_size_the_tower_sees(name: str, family: Qwen3Family, cache: Path) -> None:
    builtin = family.load_processor(f"builtin://{BUILTINS[name]}", min_pixels=784, max_pixels=10**7)
    assert builtin.image_processor.size["longest_edge"] == 128 * 128  # builtins keep their tiny images
    local = family.load_processor(str(cache / "builtin" / BUILTINS[name]), min_pixels=32 * 32, max_pixels=64 * 64)
    assert (local.image_processor.size["shortest_edge"], local.image_processor.size["longest_edge"]) == (1024, 4096)
    patch = local.image_processor.patch_size
    for size in [(640, 480), (100, 60), (33, 250), (32, 32), (1000, 10)]:
        grid = local.image_processor(_image(size), return_tensors="pt")["image_grid_thw"][0]
        width, height = family.model_input_size(size, local)
        assert (width, height) == (patch * int(grid[2]), patch * int(grid[1]))
        assert width % 32 == 0 and height % 32 == 0
        # The box frame does not depend on that size: 0..1000 of the original sides.
        assert family.dataset_columns([size], local) == {"image_size": list(size), "input_size": [1000, 1000]}
    # Within the bounds, except where a side would fall under 32 (33x250 becomes 32x160).
    sizes = [(640, 480), (100, 60), (33, 250), (32, 32)]
    assert [family.model_input_size(size, local) for size in sizes] == [(64, 32), (64, 32), (32, 160), (32, 32)]
    assert family.dataset_columns([], local) == {"image_size": None, "input_size": None}


def _qwen3_box(box: list[int], size: tuple[int, int]) -> list[int]:
    """Qwen3-VL's grounding frame (its cookbook maps back with x / 1000 * width)."""
    (w, h), (x1, y1, x2, y2) = size, box
    return [round(x1 / w * 1000), round(y1 / h * 1000), round(x2 / w * 1000), round(y2 / h * 1000)]


def test_rec_iou_scores_a_0_1000_answer_against_original_pixels(family: Qwen3Family, loaded: tuple[Any, Any]) -> None:
    processor = loaded[1]
    image_size, truth = (640, 480), [64, 120, 320, 360]
    columns = family.dataset_columns([image_size], processor)
    assert columns == {"image_size": [640, 480], "input_size": [1000, 1000]}
    box = _qwen3_box(truth, image_size)
    assert box == [100, 250, 500, 750]
    solution = f"<answer> {truth} </answer>"
    # Qwen's grounding JSON, as the REC prompt asks for it, and a bare box.
    completions = [
        f'<think>The red square.</think><answer>```json\n[{{"bbox_2d": {box}, "label": "red square"}}]\n```</answer>',
        f"<think>x</think><answer>{box}</answer>",
    ]
    batch = {"solution": [solution] * 2, **{k: [v] * 2 for k, v in columns.items()}}
    assert rewards.build("rec_iou")(completions, **batch) == [1.0, 1.0]
    assert rewards.build("rec_acc")(completions, **batch) == [1.0, 1.0]
    # Read as original pixels (no columns), the same answer misses.
    (unscaled,) = rewards.build("rec_iou")(completions[:1], solution=[solution])
    assert isinstance(unscaled, float) and unscaled < 0.5
    # A shipped rec-shapes sample (odd-sized image, rounding to the grid): within a pixel.
    sample = json.loads((SHAPES / "val.jsonl").read_text().splitlines()[0])
    truth = json.loads(sample["conversations"][1]["value"])
    size = Image.open(SHAPES / "images" / sample["image"]).size
    columns = family.dataset_columns([size], processor)
    score = rewards.build("rec_iou")(
        [f"<answer>{_qwen3_box(truth, size)}</answer>"],
        solution=[f"<answer> {truth} </answer>"],
        **{k: [v] for k, v in columns.items()},
    )[0]
    assert isinstance(score, float) and score > 0.9


# -- GRPO on the tiny models ----------------------------------------------------------------------


def qwen3_config(name: str, **overrides: Any) -> Any:
    return config(model={"uri": f"builtin://{BUILTINS[name]}"}, **overrides)


@pytest.mark.parametrize("mode", ["full", "lora", "freezeVision"])
def test_grpo_steps_move_what_the_mode_trains(name: str, mode: str, cache: Path, tmp_path: Path) -> None:
    finetuning: dict[str, Any] = {"mode": mode}
    if mode == "lora":
        finetuning["lora"] = {"r": 4, "alpha": 8}
    trainer, vision, language = run_steps(qwen3_config(name, finetuning=finetuning), tmp_path)
    assert trainer.state.global_step == 2
    assert language, "no language-model weight moved: the reward had no effect"
    if mode == "full":
        assert vision, "full fine-tuning must train the vision tower too"
        assert any(".visual.merger." in n for n in vision)
    else:
        assert vision == set()
    if mode == "lora":
        assert all("lora_" in n for n in language), language
        assert not any("visual" in n and "lora_" in n for n, _ in trainer.model.named_parameters())
        if name == "qwen3.5":
            assert any(".linear_attn.in_proj_qkv.lora_" in n for n in language)
    if mode == "freezeVision":
        assert all(not p.requires_grad for n, p in trainer.model.named_parameters() if ".visual." in n)
    # rec_iou ran with the family's columns (a random model rarely scores, but never fails).
    assert any("rewards/rec_iou/mean" in e for e in trainer.state.log_history)


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    """Before/after screenshots of different sizes (so each image has its own grid)."""
    images = tmp_path / "images"
    images.mkdir()
    lines = []
    for i in range(4):
        Image.new("RGB", (64, 64), (200, 30, 30)).save(images / f"{i}a.png")
        Image.new("RGB", (128, 64), (30, 30, 200 - 20 * i)).save(images / f"{i}b.png")
        lines.append(
            {
                "image": [f"{i}a.png", f"{i}b.png"],
                "conversations": [
                    {"from": "human", "value": "<image><image>Which defect does the second screenshot show?"},
                    {"from": "gpt", "value": "colour"},
                ],
            }
        )
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_multi_image_samples_train(
    name: str, family: Qwen3Family, loaded: tuple[Any, Any], cache: Path, pairs: Path, tmp_path: Path
) -> None:
    model, processor = loaded
    images = [Image.open(pairs.parent / "images" / n) for n in ("0a.png", "0b.png")]
    inputs = _inputs(family, processor, images)
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 4], [1, 4, 8]]
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 4 + 8
    # The box columns come from the first image, as VLM-R1 does.
    assert family.dataset_columns([im.size for im in images], processor)["image_size"] == [64, 64]
    cfg = qwen3_config(
        name,
        task="gui",
        datasets=[{"jsonl": str(pairs), "imageRoot": str(pairs.parent / "images")}],
        rewards=[{"name": "test_char_variety"}, {"name": "all_match"}],
    )
    trainer, _, language = run_steps(cfg, tmp_path / "out")
    assert trainer.state.global_step == 2
    assert language


# -- checkpoints, resume and evaluation -----------------------------------------------------------


def test_crash_resume_then_vlmr1_eval_of_the_checkpoint(name: str, cache: Path, tmp_path: Path) -> None:
    cfg = qwen3_config(name, training={"maxSteps": 3, "saveSteps": 2})
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="injected crash at step 3"):
        train(cfg, RunOptions(output_dir=run, callbacks=[CrashAt(3)]))
    newest = find_resumable(run / CHECKPOINTS)
    assert newest is not None and newest.step == 2
    counter = StepCounter()
    result = train(cfg, RunOptions(output_dir=run, callbacks=[counter]))
    assert result.resumed_from is not None and result.resumed_from.step == 2
    assert counter.steps == [3], "the resumed run must continue at step 3, not start over"
    assert [c.step for c in result.checkpoints] == [3]
    checkpoint = run / CHECKPOINTS / "checkpoint-3"
    verified = verify_checkpoint(checkpoint)
    assert verified.ok
    assert json.loads((checkpoint / "config.json").read_text())["architectures"] == [CLASSES[name]]

    # The checkpoint, scored by the standalone command (its family read from the manifest's config).
    proc = subprocess.run(
        [sys.executable, "-m", "vlmr1_cli", "eval", "--checkpoint", str(checkpoint),
         "--data", f"{SHAPES / 'val.jsonl'}:{SHAPES / 'images'}", "--task", "rec", "--name", "val",
         "--max-samples", "3", "--batch-size", "3", "--max-new-tokens", "8", "--output", str(tmp_path / "eval"),
         "--no-progress"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert record["digest"] == verified.digest and record["step"] == 3
    assert record["metrics"]["eval/val/samples"] == 3
    samples = [json.loads(x) for x in (tmp_path / "eval" / "val.samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 and all(isinstance(s["prediction"], str) for s in samples)


def test_qwen3_5s_opened_think_block_counts_as_the_models_answer(tmp_path: Path) -> None:
    """Qwen3.5's generation prompt ends in "<think>\\n": its completions start inside the block, so
    rewards score them with the prefix and SFT targets do not open the block a second time."""
    from vlmr1_trainer.rewards.setup import build_rewards, scored_rewards

    completion = "the box is red</think><answer>[1, 2, 3, 4]</answer>"
    for name, expected in (("qwen3.5", 1.0), ("qwen3-vl", 0.0)):
        cfg = qwen3_config(name, rewards=[{"name": "format"}])
        (scored,), pool = scored_rewards(build_rewards(cfg), cfg, 1)
        assert pool is None
        assert scored([completion]) == [expected]
    family = get_family("qwen3.5")
    assert family.sft_target("<think> look</think><answer>A</answer>") == "look</think><answer>A</answer>"
    assert get_family("qwen3-vl").sft_target("<think>x</think>") == "<think>x</think>"
