"""bench/gpu_step.py: the real-size model it builds, its FLOP model, and the whole script on a CPU.

The GPU measurement itself is a benchmark, not a test; what is tested here is that the one
prepared command a GPU session runs builds the published architecture and completes end to
end (every process, both trainers, both modes, the evaluation and the `vlmr1 run` smoke),
so that a session with a lent GPU spends its minutes measuring, not debugging.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ._bench import load

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"


facts = load("qwen2_5_vl_3b")
gpu_step = load("gpu_step")


def test_the_3b_configuration_has_the_published_parameter_count() -> None:
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(facts.model_config("3b"))
    described = facts.describe(model)
    # The safetensors of Qwen/Qwen2.5-VL-3B-Instruct hold 3,754,622,976 parameters (tied embeddings).
    assert described["parameters"] == 3_754_622_976
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight
    parts = ("language_body", "vision_blocks", "vision_merger")
    embedding = described["lm_head"]  # tied: the embedding table is the output projection
    assert sum(described[p] for p in parts) + embedding == described["parameters"]


def test_the_synthetic_tokenizer_gives_qwen_ids_and_a_448_image_256_tokens() -> None:
    from PIL import Image

    processor = facts.build_processor()
    tokenizer = processor.tokenizer
    assert len(tokenizer) == facts.QWEN_ORDINARY_TOKENS + 14
    assert {k: tokenizer.convert_tokens_to_ids(t) for k, t in facts.ID_TOKENS.items()} == facts.TOKEN_IDS_3B
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == facts.TEXT_3B["eos_token_id"]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "the red square."}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    encoded = processor(text=[text], images=[Image.new("RGB", (448, 448))], return_tensors="np")
    assert int((encoded["input_ids"] == facts.TOKEN_IDS_3B["image_token_id"]).sum()) == 256
    sentence = "Please provide the bounding box coordinate of the region this sentence describes: the red square."
    assert tokenizer.decode(tokenizer(sentence)["input_ids"]) == sentence
    # Ids the model can emit beyond the tokenizer (its 151,936 rows are padded) decode to nothing.
    assert tokenizer.decode([151_700, 151_935]) == ""


def test_write_rec_data_scales_images_and_boxes(tmp_path: Path) -> None:
    from PIL import Image

    source = REPO / "examples" / "data" / "rec-shapes"
    jsonl = facts.write_rec_data(source, tmp_path, 448, 3)
    first_source = json.loads((source / "train.jsonl").read_text().splitlines()[0])
    first = json.loads(jsonl.read_text().splitlines()[0])
    original = Image.open(source / "images" / first_source["image"])
    assert Image.open(tmp_path / first["image"]).size == (448, 448)
    x1, y1, x2, y2 = json.loads(first_source["conversations"][1]["value"])
    sx, sy = 448 / original.width, 448 / original.height
    assert json.loads(first["conversations"][1]["value"]) == [
        round(x1 * sx),
        round(y1 * sy),
        round(x2 * sx),
        round(y2 * sy),
    ]
    assert first["conversations"][0] == first_source["conversations"][0]


MODEL = {"language_body": 100, "lm_head": 10, "vision_blocks": 1000, "vision_merger": 40, "merge_size": 2}


@pytest.mark.parametrize(
    ("mode", "beta", "expected"),
    [
        # F_text = 2*100*(30+20) + 2*10*20 = 10,400; F_vision = 2*1000*16 + 2*40*4 = 32,320.
        # Full: generate + reference + 3 to train = 5 (F_text + F_vision).
        ("full", 0.04, 5 * (10_400 + 32_320)),
        # No reference model at beta 0.
        ("full", 0.0, 4 * (10_400 + 32_320)),
        # LoRA: generate + reference, then 2 F_text + F_vision (no weight gradients, frozen vision).
        ("lora", 0.04, 2 * (10_400 + 32_320) + 2 * 10_400 + 32_320),
    ],
)
def test_step_flops(mode: str, beta: float, expected: int) -> None:
    assert gpu_step.step_flops(MODEL, mode, beta, [(30, 20, 16)] * 3) == 3 * expected


def test_the_prepared_command_runs_end_to_end_on_a_cpu(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [
        sys.executable,
        str(BENCH / "gpu_step.py"),
        "--size=tiny",
        "--steps=1",
        "--warmup=1",
        "--generations=2",
        "--completion-length=4",
        "--image-side=56",
        "--eval-samples=2",
        f"--out={out}",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads((out / "results.json").read_text())
    assert report["model"]["ok"] and report["eval"]["ok"] and report["smoke"]["ok"]
    runs = {(r["mode"], r["trainer"]): r for r in report["runs"]}
    assert set(runs) == {("full", "vlmr1"), ("full", "trl"), ("lora", "vlmr1"), ("lora", "trl")}
    for run in runs.values():
        assert len(run["step_times"]) == 1 and run["s_per_step"] > 0
        # Two completions of one prompt per step, each at most the 4-token budget.
        assert run["sequences_per_step"] == 2 and 0 < run["generated_tokens_per_step"] <= 8
    # Both sides trained with the same settings, and LoRA trained far fewer parameters.
    assert all("settings equal" in line for line in report["comparison"]), report["comparison"]
    assert runs[("lora", "vlmr1")]["trainable_parameters"] == runs[("lora", "trl")]["trainable_parameters"]
    assert runs[("lora", "vlmr1")]["trainable_parameters"] < runs[("full", "vlmr1")]["trainable_parameters"] / 10
    assert "vlmr1 eval (greedy" in (out / "results.md").read_text()
