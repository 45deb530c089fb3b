"""GLM-4.1V through the family interface, on the offline ``builtin://tiny-glm4.1v``: build,
load, prompt, generate, freeze, LoRA, GRPO steps (full / LoRA / freezeVision, multi-image),
checkpoint + resume, ``vlmr1 eval``, and GLM-V's 0..1000 boxes scored by ``rec_iou``."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from vlmr1_core.checkpoints import find_resumable, sha256_file, verify_checkpoint
from vlmr1_core.config import LoraSpec, ModelSpec, detect_family
from vlmr1_trainer import rewards
from vlmr1_trainer.train import CHECKPOINTS, EVALUATION, RunOptions, train
from vlmr1_trainer.vlm import get_family
from vlmr1_trainer.vlm.builtin import MARKER, build_builtin
from vlmr1_trainer.vlm.glm4v import Glm4vFamily

from .test_train import SHAPES, CrashAt, StepCounter, config, run_steps

URI = "builtin://tiny-glm4.1v"
REPO = Path(__file__).resolve().parents[2]
QUESTION = "Please provide the bounding box coordinate of the region this sentence describes: the red square."


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One build of the tiny model for the module (and its subprocesses)."""
    root = tmp_path_factory.mktemp("vlmr1-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VLMR1_CACHE_DIR", str(root))
        yield root


@pytest.fixture(scope="module")
def family() -> Glm4vFamily:
    family = get_family("glm4.1v")
    assert isinstance(family, Glm4vFamily)
    return family


@pytest.fixture(scope="module")
def loaded(cache: Path, family: Glm4vFamily) -> tuple[Any, Any]:
    from vlmr1_trainer.storage import resolve_model

    source = resolve_model(URI)
    assert source.kind == "builtin" and Path(source.pretrained).is_relative_to(cache)
    return family.load_model(source), family.load_processor(source)


def _image(size: tuple[int, int] = (100, 60)) -> Image.Image:
    image = Image.new("RGB", size, (240, 240, 240))
    image.paste((220, 20, 20), (10, 10, 40, 30))
    return image


def _inputs(family: Glm4vFamily, processor: Any, images: list[Image.Image]) -> Any:
    prompt = family.build_prompt("rec", QUESTION, num_images=len(images))
    text = processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    return processor(text=[text], images=images, return_tensors="pt")


# -- the builtin --------------------------------------------------------------------------------


def test_builtin_build_is_deterministic_given_the_seed(tmp_path: Path) -> None:
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        build_builtin("tiny-glm4.1v", tmp_path / name, seed=seed)
    a, b, c = ({p.name: sha256_file(p) for p in (tmp_path / x).iterdir() if p.is_file()} for x in "abc")
    assert a == b, "the same seed must give the same files, byte for byte"
    assert a["model.safetensors"] != c["model.safetensors"]
    assert a["tokenizer.json"] == c["tokenizer.json"]
    assert {"config.json", "model.safetensors", "processor_config.json", "tokenizer.json", MARKER} <= set(a)
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["architectures"] == ["Glm4vForConditionalGeneration"] and config["model_type"] == "glm4v"
    assert (config["text_config"]["num_hidden_layers"], config["text_config"]["hidden_size"]) == (2, 64)
    assert config["vision_config"]["depth"] == 2


@pytest.mark.parametrize(
    "uri",
    [
        "hf://zai-org/GLM-4.1V-9B-Thinking",
        "hf://THUDM/GLM-4.1V-9B-Base",
        "zai-org/GLM-4.1V-9B-Thinking",
        "builtin://tiny-glm4.1v",
        "s3://models/glm4v-9b-rec/checkpoint-100",
    ],
)
def test_family_is_detected_from_the_uri(uri: str) -> None:
    assert detect_family(uri) == "glm4.1v"
    assert ModelSpec(uri=uri).resolved_family == "glm4.1v"


def test_family_loads_the_builtin_with_glms_tokens_and_chat_format(
    family: Glm4vFamily, loaded: tuple[Any, Any]
) -> None:
    model, processor = loaded
    assert type(model).__name__ == "Glm4vForConditionalGeneration"
    assert type(processor).__name__ == "TinyGlm4vProcessor"
    assert type(processor.image_processor).__name__ == "Glm4vImageProcessorPil"
    assert family.builtin_models == ("tiny-glm4.1v",)
    tokenizer = processor.tokenizer
    ids = tokenizer.convert_tokens_to_ids
    config = model.config
    assert (config.image_token_id, config.image_start_token_id, config.image_end_token_id) == (
        ids("<|image|>"),
        ids("<|begin_of_image|>"),
        ids("<|end_of_image|>"),
    )
    # GLM-4.1V ends a completion at <|endoftext|> or where the next turn would start.
    assert tokenizer.eos_token == tokenizer.pad_token == "<|endoftext|>"
    assert model.generation_config.eos_token_id == [ids("<|endoftext|>"), ids("<|user|>"), ids("<|observation|>")]
    # GLM-4.1V's chat format around VLM-R1's think/answer instruction.
    text = processor.apply_chat_template(family.build_prompt("rec", QUESTION, 1), add_generation_prompt=True)
    assert text.startswith("[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>" + QUESTION)
    assert "<think> </think>" in text and "<answer> </answer>" in text
    assert text.endswith("Output the final answer in JSON format.<|assistant|>\n")


def test_rec_prompt_with_an_image_generates(family: Glm4vFamily, loaded: tuple[Any, Any]) -> None:
    model, processor = loaded
    inputs = _inputs(family, processor, [_image()])
    # 100x60 -> 112x56 (multiples of 28 within the 56^2..112^2 bounds): 8x4 patches, 2x2-merged: 8 tokens.
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 8]]
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 8
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False, min_new_tokens=4)
    assert out.shape == (1, inputs["input_ids"].shape[1] + 4)
    assert isinstance(processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0], str)


def test_forward_backward_reaches_the_vision_tower_and_the_language_model(
    family: Glm4vFamily, loaded: tuple[Any, Any]
) -> None:
    model, processor = loaded
    inputs = _inputs(family, processor, [_image(), _image((56, 112))])
    model.zero_grad()
    loss = model(**inputs, labels=inputs["input_ids"]).loss
    assert torch.isfinite(loss)
    loss.backward()
    grads = {name for name, p in model.named_parameters() if p.grad is not None and bool(p.grad.abs().sum() > 0)}
    assert any(n.startswith("model.visual.blocks.") for n in grads)
    assert any(n.startswith("model.visual.merger.") for n in grads)  # the projector is part of the path
    assert any(n.startswith("model.language_model.") for n in grads)
    model.zero_grad()


def test_save_and_load_round_trip_through_the_family(
    family: Glm4vFamily, loaded: tuple[Any, Any], tmp_path: Path
) -> None:
    model, processor = loaded
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    again, processor_again = family.load_model(str(tmp_path)), family.load_processor(str(tmp_path))
    assert type(processor_again).__name__ == "TinyGlm4vProcessor"
    inputs = _inputs(family, processor, [_image()])
    assert torch.equal(inputs["input_ids"], _inputs(family, processor_again, [_image()])["input_ids"])
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, again(**inputs).logits)


# -- parameters: freezeVision and LoRA ----------------------------------------------------------


def test_freeze_vision_freezes_exactly_the_vision_tower(family: Glm4vFamily, loaded: tuple[Any, Any]) -> None:
    model = copy.deepcopy(loaded[0])
    names = {n for n, _ in model.named_parameters()}
    tower = {n for n in names if n.startswith("model.visual.")}
    assert set(family.vision_parameter_names(model)) == tower
    # The 2x2 downsample and the merger (GLM's projector) are inside model.visual.
    assert any(".downsample." in n for n in tower) and any(".merger." in n for n in tower)
    assert set(family.freeze_vision(model)) == tower
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == names - tower
    assert all(n.startswith(("model.language_model.", "lm_head.")) for n in trainable)


def test_lora_defaults_map_onto_glms_fused_mlp(family: Glm4vFamily) -> None:
    import re

    pattern = re.compile(family.lora_target_modules(LoraSpec().target_modules))
    layer = "base_model.model.model.language_model.layers.0"
    for suffix in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"):
        assert pattern.fullmatch(f"{layer}.{suffix}")
    assert pattern.fullmatch(f"{layer}.mlp.gate_up_proj") and pattern.fullmatch(f"{layer}.mlp.down_proj")
    # The vision tower's own gate/up/down projections (blocks and merger) never match.
    for name in (
        "model.visual.blocks.0.mlp.gate_proj",
        "model.visual.merger.up_proj",
        "model.visual.blocks.1.attn.qkv",
    ):
        assert not pattern.fullmatch(name) and not pattern.fullmatch(f"base_model.model.{name}")


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # raised inside peft
def test_lora_adapters_only_on_language_model_linears(family: Glm4vFamily, loaded: tuple[Any, Any]) -> None:
    from peft import get_peft_model

    model = loaded[0]
    spec = LoraSpec(r=4, alpha=8)
    peft_model = get_peft_model(copy.deepcopy(model), family.lora_config(spec))
    adapted = {n.split(".lora_A")[0] for n, _ in peft_model.named_parameters() if ".lora_A." in n}
    per_layer = {n.split(".layers.0.", 1)[1] for n in adapted if ".layers.0." in n}
    assert per_layer == {
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "mlp.gate_up_proj",
        "mlp.down_proj",
    }
    assert len(adapted) == model.config.text_config.num_hidden_layers * len(per_layer)
    assert all(".model.language_model.layers." in n for n in adapted)
    lora_params = [n for n, _ in peft_model.named_parameters() if "lora_" in n]
    assert not any(family.is_vision_parameter(n) for n in lora_params)
    assert {n for n, p in peft_model.named_parameters() if p.requires_grad} == set(lora_params)


# -- pixel bounds and boxes ---------------------------------------------------------------------


def test_pixel_bounds_bound_the_resized_area(family: Glm4vFamily, cache: Path) -> None:
    builtin = family.load_processor(URI, min_pixels=784, max_pixels=10**7)
    assert builtin.image_processor.size["longest_edge"] == 2 * 112 * 112  # builtins keep their tiny images
    local = family.load_processor(str(cache / "builtin" / "tiny-glm4.1v"), min_pixels=28 * 28, max_pixels=56 * 56)
    # GLM's size keys count two temporal frames of the image.
    assert (local.image_processor.size["shortest_edge"], local.image_processor.size["longest_edge"]) == (1568, 6272)
    patch = local.image_processor.patch_size
    for size in [(640, 480), (100, 60), (33, 250), (28, 28)]:
        grid = local.image_processor(_image(size), return_tensors="pt")["image_grid_thw"][0]
        width, height = family.model_input_size(size, local)
        assert (width, height) == (patch * int(grid[2]), patch * int(grid[1]))
        assert width % 28 == 0 and height % 28 == 0
    # Within the bounds, except where a side would fall under 28 (33x250 becomes 28x140).
    assert [family.model_input_size(size, local) for size in [(640, 480), (100, 60), (28, 28)]] == [
        (56, 28),
        (56, 28),
        (28, 28),
    ]


def _glm_box(box: list[int], size: tuple[int, int]) -> list[int]:
    """GLM-V's grounding frame: x = round(x_pixel / W * 1000), y = round(y_pixel / H * 1000)."""
    (w, h), (x1, y1, x2, y2) = size, box
    return [round(x1 / w * 1000), round(y1 / h * 1000), round(x2 / w * 1000), round(y2 / h * 1000)]


def test_rec_iou_scores_a_glm_box_answer_against_original_pixels(family: Glm4vFamily, loaded: tuple[Any, Any]) -> None:
    processor = loaded[1]
    image_size, truth = (640, 480), [64, 120, 320, 360]
    columns = family.dataset_columns([image_size], processor)
    assert columns == {"image_size": [640, 480], "input_size": [1000, 1000]}
    glm = _glm_box(truth, image_size)
    assert glm == [100, 250, 500, 750]
    solution = f"<answer> {truth} </answer>"
    batch = {"solution": [solution] * 3, **{k: [v] * 3 for k, v in columns.items()}}
    box = ", ".join(map(str, glm))
    answer = f"<think>The red square.</think><answer><|begin_of_box|>[{box}]<|end_of_box|></answer>"
    # TRL decodes completions without special tokens: the box markers are GLM special tokens.
    tokenizer = processor.tokenizer
    decoded = tokenizer.decode(tokenizer(answer)["input_ids"], skip_special_tokens=True)
    assert "<|begin_of_box|>" not in decoded and f"<answer>[{box}]</answer>" in decoded
    as_json = f'<think>x</think><answer>{{"bbox_2d": {glm}}}</answer>'
    completions = [answer, decoded, as_json]
    assert rewards.build("rec_iou")(completions, **batch) == [1.0, 1.0, 1.0]
    assert rewards.build("rec_acc")(completions, **batch) == [1.0, 1.0, 1.0]
    # Read as original pixels (no columns), the same answer misses.
    (miss,) = rewards.build("rec_iou")([answer], solution=[solution])
    assert miss is not None and miss < 0.5
    # Rounding to the 0..1000 grid costs less than a pixel on an odd-sized image.
    odd_size, odd_truth = (333, 217), [17, 40, 250, 199]
    odd = rewards.build("rec_iou")(
        [f"<answer><|begin_of_box|>{_glm_box(odd_truth, odd_size)}<|end_of_box|></answer>"],
        solution=[f"<answer> {odd_truth} </answer>"],
        **{k: [v] for k, v in family.dataset_columns([odd_size], processor).items()},
    )[0]
    assert odd is not None and odd > 0.98


# -- GRPO on the tiny model ---------------------------------------------------------------------


def glm_config(**overrides: Any) -> Any:
    return config(model={"uri": URI}, **overrides)


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")
@pytest.mark.parametrize("mode", ["full", "lora", "freezeVision"])
def test_grpo_steps_move_what_the_mode_trains(mode: str, cache: Path, tmp_path: Path) -> None:
    finetuning: dict[str, Any] = {"mode": mode}
    if mode == "lora":
        finetuning["lora"] = {"r": 4, "alpha": 8}
    trainer, vision, language = run_steps(glm_config(finetuning=finetuning), tmp_path)
    assert trainer.state.global_step == 2
    assert language, "no language-model weight moved: the reward had no effect"
    if mode == "full":
        assert vision, "full fine-tuning must train the vision tower too"
        assert any(n.startswith("model.visual.merger.") for n in vision)
    else:
        assert vision == set()
    if mode == "lora":
        assert all("lora_" in n for n in language), language
        assert any(".mlp.gate_up_proj.lora_" in n for n in language)
        assert not any("visual" in n and "lora_" in n for n, _ in trainer.model.named_parameters())
    # rec_iou ran with the family's columns (a random model rarely scores, but never fails).
    assert any("rewards/rec_iou/mean" in e for e in trainer.state.log_history)


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    """Before/after screenshots of different sizes (so each image has its own grid)."""
    images = tmp_path / "images"
    images.mkdir()
    lines = []
    for i in range(4):
        Image.new("RGB", (56, 56), (200, 30, 30)).save(images / f"{i}a.png")
        Image.new("RGB", (112, 56), (30, 30, 200 - 20 * i)).save(images / f"{i}b.png")
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
    family: Glm4vFamily, loaded: tuple[Any, Any], cache: Path, pairs: Path, tmp_path: Path
) -> None:
    processor = loaded[1]
    images = [Image.open(pairs.parent / "images" / name).convert("RGB") for name in ("0a.png", "0b.png")]
    inputs = _inputs(family, processor, images)
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 4], [1, 4, 8]]
    assert int((inputs["input_ids"] == loaded[0].config.image_token_id).sum()) == 4 + 8
    cfg = glm_config(
        task="gui",
        datasets=[{"jsonl": str(pairs), "imageRoot": str(pairs.parent / "images")}],
        rewards=[{"name": "test_char_variety"}, {"name": "all_match"}],
    )
    trainer, _, language = run_steps(cfg, tmp_path / "out")
    assert trainer.state.global_step == 2
    assert language


# -- checkpoints, resume and evaluation ---------------------------------------------------------


def test_crash_after_checkpoint_then_resume(cache: Path, tmp_path: Path) -> None:
    cfg = glm_config(training={"maxSteps": 3, "saveSteps": 2})
    with pytest.raises(RuntimeError, match="injected crash at step 3"):
        train(cfg, RunOptions(output_dir=tmp_path, callbacks=[CrashAt(3)]))
    newest = find_resumable(tmp_path / CHECKPOINTS)
    assert newest is not None and newest.step == 2
    counter = StepCounter()
    result = train(cfg, RunOptions(output_dir=tmp_path, callbacks=[counter]))
    assert result.resumed_from is not None and result.resumed_from.step == 2
    assert counter.steps == [3], "the resumed run must continue at step 3, not start over"
    assert [c.step for c in result.checkpoints] == [3]
    assert verify_checkpoint(tmp_path / CHECKPOINTS / "checkpoint-3").ok
    assert json.loads((tmp_path / CHECKPOINTS / "checkpoint-3" / "config.json").read_text())["model_type"] == "glm4v"


def test_vlmr1_eval_scores_a_tiny_checkpoint_as_training_did(cache: Path, tmp_path: Path) -> None:
    val = [{"name": "val", "jsonl": str(SHAPES / "val.jsonl"), "imageRoot": str(SHAPES / "images"), "maxSamples": 3}]
    cfg = glm_config(
        training={"maxSteps": 1, "saveSteps": 1}, evaluation={"datasets": val, "batchSize": 2, "maxNewTokens": 8}
    )
    train(cfg, RunOptions(output_dir=tmp_path / "run"))
    checkpoint = tmp_path / "run" / CHECKPOINTS / "checkpoint-1"
    in_training = json.loads((checkpoint / EVALUATION / "metrics.json").read_text())
    assert in_training["metrics"]["eval/val/samples"] == 3
    proc = subprocess.run(
        [sys.executable, "-m", "vlmr1_cli", "eval", "--checkpoint", str(checkpoint),
         "--data", f"{SHAPES / 'val.jsonl'}:{SHAPES / 'images'}", "--task", "rec", "--name", "val",
         "--max-samples", "3", "--batch-size", "3", "--max-new-tokens", "8", "--output", str(tmp_path / "eval"),
         "--no-progress"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    standalone = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    # Greedy decoding: the command reproduces the trainer's evaluation, sample by sample.
    assert standalone["metrics"] == in_training["metrics"]
    assert standalone["digest"] == verify_checkpoint(checkpoint).digest and standalone["step"] == 1
    ours = [json.loads(x)["prediction"] for x in (tmp_path / "eval" / "val.samples.jsonl").read_text().splitlines()]
    theirs = [
        json.loads(x)["prediction"] for x in (checkpoint / EVALUATION / "val.samples.jsonl").read_text().splitlines()
    ]
    assert ours == theirs and len(ours) == 3
