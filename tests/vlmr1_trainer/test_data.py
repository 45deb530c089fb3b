"""VLM-R1 JSONL loading: rows for TRL, lazy images, bad data reported with file and line."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from vlmr1_trainer import data


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def sample(
    image: Any = "a.png", question: str = "<image>Find the cat.", answer: Any = "[1, 2, 3, 4]", **extra: Any
) -> dict[str, Any]:
    row = {"conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}], **extra}
    if image is not None:
        row["image"] = image
    return row


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (64, 48), "red").save(folder / "a.png")
    Image.new("L", (10, 40), 128).save(folder / "tiny.png")
    Image.new("RGB", (100, 20), "blue").save(folder / "wide.png")
    (folder / "broken.png").write_bytes(b"not an image at all")
    # A valid header with the pixel data cut off: passes the load check, fails to decode.
    full = folder / "full.png"
    Image.effect_noise((64, 64), 50).save(full)
    (folder / "truncated.png").write_bytes(full.read_bytes()[:200])
    return folder


def test_rows_have_trl_columns(tmp_path: Path, images: Path) -> None:
    jsonl = write_jsonl(tmp_path / "rec.jsonl", [sample(answer="<answer>[1, 2, 3, 4]</answer>")])
    dataset = data.VLMR1Dataset.from_sources([data.DataSource(jsonl, images)])
    assert len(dataset) == 1
    row = dataset[0]
    assert row["prompt"] == [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": data.default_question_template("Find the cat.")}],
        }
    ]
    assert row["solution"] == "<answer> [1, 2, 3, 4] </answer>"
    assert row["accu_reward_method"] == "default"
    assert row["image_size"] == [64, 48]
    assert row["problem"] == "Find the cat."
    [image] = row["images"]
    assert image.size == (64, 48) and image.mode == "RGB"


def test_question_template_is_pluggable(tmp_path: Path, images: Path) -> None:
    jsonl = write_jsonl(tmp_path / "a.jsonl", [sample()])
    dataset = data.VLMR1Dataset.from_sources([data.DataSource(jsonl, images)], question_template=lambda q: f"Q: {q}")
    assert dataset[0]["prompt"][0]["content"][-1] == {"type": "text", "text": "Q: Find the cat."}


def test_multi_image_and_text_only(tmp_path: Path, images: Path) -> None:
    jsonl = write_jsonl(
        tmp_path / "gui.jsonl",
        [sample(image=["a.png", "wide.png"], question="<image><image>Diff?"), sample(image=None)],
    )
    dataset = data.VLMR1Dataset.from_sources([data.DataSource(jsonl, images)])
    first, second = dataset[0], dataset[1]
    assert [part["type"] for part in first["prompt"][0]["content"]] == ["image", "image", "text"]
    assert [im.size for im in first["images"]] == [(64, 48), (140, 28)]
    assert first["image_size"] == [64, 48]
    assert second["images"] == [] and second["image_size"] is None
    assert [part["type"] for part in second["prompt"][0]["content"]] == ["text"]


@pytest.mark.parametrize(("name", "size"), [("tiny.png", (28, 112)), ("wide.png", (140, 28))])
def test_small_images_upscaled_like_vlm_r1(images: Path, name: str, size: tuple[int, int]) -> None:
    assert data.open_image(images / name).size == size


def test_several_files_with_their_folders_and_methods(tmp_path: Path, images: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    Image.new("RGB", (30, 30)).save(other / "b.png")
    first = write_jsonl(tmp_path / "one.jsonl", [sample(), sample(accu_reward_method="yes_no")])
    second = write_jsonl(tmp_path / "two.jsonl", [sample(image="b.png", answer=42)])
    sources = data.parse_sources(f"{first}:{second}", f"{images}:{other}", "mcq:math")
    dataset = data.VLMR1Dataset.from_sources(sources)
    assert [r["accu_reward_method"] for r in dataset] == ["mcq", "yes_no", "math"]
    assert dataset[2]["solution"] == "<answer> 42 </answer>"
    assert dataset[2]["image_size"] == [30, 30]


def test_image_root_defaults_to_the_jsonl_folder(images: Path) -> None:
    jsonl = write_jsonl(images / "here.jsonl", [sample()])
    [source] = data.sources_from_specs(
        [type("Spec", (), {"jsonl": str(jsonl), "image_root": None, "reward_method": None})()]
    )
    assert source.images == images
    assert len(data.VLMR1Dataset.from_sources([source])) == 1


def test_colon_form_must_pair_up() -> None:
    with pytest.raises(ValueError, match="2 data files but 1 image folders"):
        data.parse_sources("a.jsonl:b.jsonl", "x")
    with pytest.raises(ValueError, match="2 data files but 3 reward methods"):
        data.parse_sources("a.jsonl:b.jsonl", None, "a:b:c")


BAD_LINES = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
    (json.dumps(sample(image="missing.png")), "missing.png does not exist"),
    (json.dumps(sample(image="broken.png")), "broken.png cannot be read"),
    (json.dumps(sample(image=7)), "'image' must be a path or a list of paths"),
    (json.dumps({"image": "a.png", "conversations": [{"from": "gpt", "value": "x"}]}), "no human turn"),
    (json.dumps({"image": "a.png"}), "no human turn"),
    (json.dumps({"image": "a.png", "conversations": [{"from": "human", "value": "q"}]}), "no gpt turn"),
    (json.dumps(sample(accu_reward_method="llm")), "unknown accu_reward_method 'llm'"),
]


@pytest.mark.parametrize(("line", "reason"), BAD_LINES)
def test_bad_line_is_an_error_naming_file_and_line(tmp_path: Path, images: Path, line: str, reason: str) -> None:
    jsonl = write_jsonl(tmp_path / "bad.jsonl", [sample(), "", line])
    with pytest.raises(data.BadSampleError, match=reason) as info:
        data.load_samples([data.DataSource(jsonl, images)])
    assert str(info.value).startswith(f"{jsonl}:3: ")
    assert info.value.line == 3


def test_skip_counts_and_warns(tmp_path: Path, images: Path, caplog: pytest.LogCaptureFixture) -> None:
    jsonl = write_jsonl(tmp_path / "bad.jsonl", [sample()] + [line for line, _ in BAD_LINES] + [sample()])
    dataset = data.VLMR1Dataset.from_sources([data.DataSource(jsonl, images)], on_bad_sample="skip")
    assert len(dataset) == 2
    assert dataset.report.skipped == len(BAD_LINES)
    assert dataset.report.summary() == f"2 samples loaded, {len(BAD_LINES)} bad samples skipped"
    assert f"{jsonl}:2: not valid JSON" in caplog.text


def test_undecodable_image_at_read_time(tmp_path: Path, images: Path) -> None:
    jsonl = write_jsonl(tmp_path / "t.jsonl", [sample(image="truncated.png"), sample()])
    strict = data.VLMR1Dataset.from_sources([data.DataSource(jsonl, images)])
    with pytest.raises(data.BadSampleError, match=r"t.jsonl:1: image .*truncated.png cannot be decoded"):
        strict[0]
    lenient = data.VLMR1Dataset.from_sources([data.DataSource(jsonl, images)], on_bad_sample="skip")
    assert lenient[0]["image_size"] == [64, 48]  # the next good sample stands in
    assert lenient.report.skipped == 1


def test_images_open_lazily_and_dataset_pickles(tmp_path: Path, images: Path) -> None:
    jsonl = write_jsonl(tmp_path / "a.jsonl", [sample()])
    dataset = data.VLMR1Dataset.from_sources([data.DataSource(jsonl, images)])
    assert all(isinstance(p, Path) for s in dataset.samples for p in s.image_paths)
    clone = pickle.loads(pickle.dumps(dataset))
    (images / "a.png").unlink()  # only reading a row touches the pixels
    with pytest.raises(data.BadSampleError, match="cannot be decoded"):
        clone[0]


def test_missing_file_and_empty_dataset(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl cannot be opened"):
        data.load_samples([data.DataSource(tmp_path / "nope.jsonl")])
    empty = write_jsonl(tmp_path / "empty.jsonl", ["{"])
    with pytest.raises(ValueError, match="no usable samples"):
        data.VLMR1Dataset.from_sources([data.DataSource(empty)], on_bad_sample="skip")


def test_data_module_imports_neither_torch_nor_transformers() -> None:
    import subprocess
    import sys

    code = (
        "import sys, vlmr1_trainer.data, vlmr1_trainer.rewards; "
        "print(sorted(m for m in ('torch', 'transformers', 'PIL', 'math_verify') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_hf_dataset_view_for_trl(tmp_path: Path, images: Path) -> None:
    from datasets import Dataset

    jsonl = write_jsonl(tmp_path / "a.jsonl", [sample(), sample(image=["a.png", "wide.png"])])
    hf = data.to_hf_dataset(data.VLMR1Dataset.from_sources([data.DataSource(jsonl, images)]))
    assert isinstance(hf, Dataset) and len(hf) == 2
    row = hf[1]
    assert [im.size for im in row["images"]] == [(64, 48), (140, 28)]
    assert row["solution"] == "<answer> [1, 2, 3, 4] </answer>"
    assert row["prompt"][0]["content"][-1]["type"] == "text"
    batch = hf[[0, 1]]
    assert [len(images) for images in batch["images"]] == [1, 2]
    assert pickle.loads(pickle.dumps(hf))[0]["image_size"] == [64, 48]
