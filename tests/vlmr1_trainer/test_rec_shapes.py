"""The shipped rec-shapes dataset: reproducible, loadable, and its answers are right.

The ground truth is checked against the pixels, not against the generator's own
bookkeeping: each image is segmented by colour, each shape's kind is told from how
much of its box it fills, the referring expression is resolved against what was
found, and it must pick exactly one shape whose tight box is the answer.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections import deque
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from PIL import Image

from vlmr1_core.api import GRPOJob
from vlmr1_core.api.manifest import load_manifests
from vlmr1_trainer import data, rewards
from vlmr1_trainer.rewards.rec import ground_truth_box

from ._shipped import assert_regenerates, files

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
GENERATOR = EXAMPLES / "data" / "generate_rec_shapes.py"
SHIPPED = EXAMPLES / "data" / "rec-shapes"
LOCAL_JOB = EXAMPLES / "grpojob-rec-local.yaml"
#: The parameters the shipped files were generated with (also stated in their README.md).
SHIPPED_ARGS = ["--count", "48", "--val-count", "16", "--seed", "0"]
SPLITS = {"train": 48, "val": 16}

Box = tuple[int, int, int, int]


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_rec_shapes", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolve the module through sys.modules while the class is created.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


GEN = _load_generator()
COLOURS: dict[str, tuple[int, int, int]] = GEN.COLOURS
EXPRESSION_RE = re.compile(
    r"^the (?:(?P<colour>{c}) )?(?P<kind>circle|square|triangle|shape)(?: on the (?P<side>left|right))?$"
    r"|^the (?P<extreme>leftmost|rightmost) shape$".format(c="|".join(COLOURS))
)
QUESTION_PREFIX = "Please provide the bounding box coordinate of the region this sentence describes: "


def _source(split: str) -> data.DataSource:
    return data.DataSource(SHIPPED / f"{split}.jsonl", SHIPPED / "images")


def _samples(split: str) -> list[data.Sample]:
    samples, report = data.load_samples([_source(split)], "error")
    assert report.skipped == 0, report.problems
    return samples


def _answer(sample: data.Sample) -> Box:
    box = ground_truth_box(sample.solution)
    assert isinstance(box, list) and len(box) == 4 and all(isinstance(v, int) for v in box), sample.solution
    return box[0], box[1], box[2], box[3]


def _expression(sample: data.Sample) -> str:
    assert sample.problem.startswith(QUESTION_PREFIX), sample.problem
    assert sample.problem.endswith(".")
    return sample.problem[len(QUESTION_PREFIX) : -1]


def _shapes(path: Path) -> list[tuple[str, str, Box]]:
    """(colour, kind, tight box with exclusive right/bottom edge) of every shape in the image."""
    with Image.open(path) as raw:
        rgb = np.asarray(raw.convert("RGB"), dtype=np.int32)
    height, width, _ = rgb.shape
    # Label each pixel with the nearest shape colour, or -1 when it is background grey.
    names = list(COLOURS)
    distance = np.stack([np.abs(rgb - np.array(COLOURS[n])).sum(axis=-1) for n in names])
    label = np.where(distance.min(axis=0) < 60, distance.argmin(axis=0), -1)
    seen = np.zeros((height, width), dtype=bool)
    found = []
    for y0, x0 in zip(*np.nonzero(label >= 0), strict=True):
        if seen[y0, x0]:
            continue
        colour = int(label[y0, x0])
        queue, pixels = deque([(int(y0), int(x0))]), []
        seen[y0, x0] = True
        while queue:  # 8-connected flood fill of one colour
            y, x = queue.popleft()
            pixels.append((y, x))
            for ny in (y - 1, y, y + 1):
                for nx in (x - 1, x, x + 1):
                    if 0 <= ny < height and 0 <= nx < width and not seen[ny, nx] and label[ny, nx] == colour:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
        ys, xs = [p[0] for p in pixels], [p[1] for p in pixels]
        box = (min(xs), min(ys), max(xs) + 1, max(ys) + 1)
        fill = len(pixels) / ((box[2] - box[0]) * (box[3] - box[1]))
        # Rasterised at pixel centres: a square fills its box, a disc ~0.79, a triangle ~0.5.
        kind = "square" if fill > 0.95 else "circle" if 0.7 < fill < 0.9 else "triangle" if 0.4 < fill < 0.6 else "?"
        found.append((names[colour], kind, box))
    return found


def _resolve(expression: str, shapes: list[tuple[str, str, Box]]) -> list[Box]:
    """The boxes of the shapes an expression of the dataset's grammar picks."""
    match = EXPRESSION_RE.match(expression)
    assert match is not None, f"expression outside the grammar: {expression!r}"
    if match["extreme"]:
        pool, side = shapes, match["extreme"][:-4]  # "leftmost" -> "left"
    else:
        pool = [
            s
            for s in shapes
            if (match["colour"] is None or s[0] == match["colour"])
            and (match["kind"] == "shape" or s[1] == match["kind"])
        ]
        side = match["side"]
    if side == "left":
        pool = [s for s in pool if all(s[2][2] <= o[2][0] for o in pool if o is not s)]
    elif side == "right":
        pool = [s for s in pool if all(o[2][2] <= s[2][0] for o in pool if o is not s)]
    return [s[2] for s in pool]


def test_regenerating_reproduces_shippedfiles(tmp_path: Path) -> None:
    assert_regenerates(GENERATOR, SHIPPED, SHIPPED_ARGS, tmp_path / "rec-shapes")


def test_dataset_is_small_and_counted() -> None:
    total = sum(len(b) for b in files(SHIPPED).values())
    assert total < 512 * 1024
    for split, count in SPLITS.items():
        assert len(_samples(split)) == count
    pngs = sorted(p.name for p in (SHIPPED / "images").iterdir())
    assert pngs == sorted(f"{s}-{i:04d}.png" for s, n in SPLITS.items() for i in range(n))


def test_pngs_carry_no_metadata() -> None:
    """Only IHDR, PLTE, IDAT, IEND: no timestamps or text that would make bytes vary."""
    for path in sorted((SHIPPED / "images").glob("*.png")):
        raw = path.read_bytes()
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        chunks, pos = [], 8
        while pos < len(raw):
            length = int.from_bytes(raw[pos : pos + 4], "big")
            chunks.append(raw[pos + 4 : pos + 8])
            pos += 12 + length
        assert chunks == [b"IHDR", b"PLTE", b"IDAT", b"IEND"], path.name


@pytest.mark.parametrize("split", SPLITS)
def test_every_sample_loads_as_a_trl_row(split: str) -> None:
    dataset = data.VLMR1Dataset.from_sources([_source(split)], on_bad_sample="error")
    assert dataset.report.skipped == 0
    for row in dataset:
        (image,) = row["images"]
        assert image.mode == "RGB"
        assert list(image.size) == row["image_size"]
        assert GEN.MIN_SIDE <= image.width <= GEN.MAX_SIDE and GEN.MIN_SIDE <= image.height <= GEN.MAX_SIDE
        assert row["accu_reward_method"] == "default"
        assert row["prompt"][0]["content"][0] == {"type": "image"}
    assert dataset.report.skipped == 0


@pytest.mark.parametrize("split", SPLITS)
def test_ground_truth_is_the_one_named_shape(split: str) -> None:
    kinds_seen: set[str] = set()
    for sample in _samples(split):
        (path,) = sample.image_paths
        assert sample.image_size is not None
        width, height = sample.image_size
        x1, y1, x2, y2 = box = _answer(sample)
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height, f"{path.name}: box {box} outside {width}x{height}"
        shapes = _shapes(path)
        assert 1 <= len(shapes) <= 3, f"{path.name}: {shapes}"
        assert all(kind != "?" for _, kind, _ in shapes), f"{path.name}: unrecognised shape in {shapes}"
        picked = _resolve(_expression(sample), shapes)
        assert picked == [box], f"{path.name}: {_expression(sample)!r} picks {picked} among {shapes}, answer {box}"
        kinds_seen |= {kind for _, kind, b in shapes if b == box}
    assert kinds_seen == {"circle", "square", "triangle"}


def test_box_covers_every_pixel_of_the_named_shape() -> None:
    """Independently of segmentation: inside the box, the target colour's pixels reach all four edges,
    and in the one-pixel ring around it there are none (the shape is neither cut nor padded)."""
    for sample in _samples("train"):
        match = EXPRESSION_RE.match(_expression(sample))
        assert match is not None
        if match["colour"] is None:
            continue
        with Image.open(sample.image_paths[0]) as raw:
            rgb = np.asarray(raw.convert("RGB"), dtype=np.int32)
        mask = np.abs(rgb - np.array(COLOURS[match["colour"]])).sum(axis=-1) < 60
        x1, y1, x2, y2 = _answer(sample)
        inner = mask[y1:y2, x1:x2]
        assert inner.any(axis=0).all() and inner.any(axis=1).all(), sample.image_paths[0].name
        ring = mask[max(y1 - 1, 0) : y2 + 1, max(x1 - 1, 0) : x2 + 1].sum() - inner.sum()
        assert ring == 0, sample.image_paths[0].name


@pytest.mark.parametrize("split", SPLITS)
def test_ground_truth_as_completion_scores_full_reward(split: str) -> None:
    rows = list(data.VLMR1Dataset.from_sources([_source(split)]))
    columns: dict[str, list[Any]] = {
        "solution": [r["solution"] for r in rows],
        "image_size": [r["image_size"] for r in rows],
    }
    boxes = [ground_truth_box(r["solution"]) for r in rows]
    bare = [f"<think>x</think><answer>[{x1},{y1},{x2},{y2}]</answer>" for x1, y1, x2, y2 in boxes]
    # rec_format wants a JSON object around the box (VLM-R1's Qwen2.5-VL answer: {"bbox_2d": [...]}).
    as_json = [f'<think>x</think><answer>{{"bbox_2d": [{x1},{y1},{x2},{y2}]}}</answer>' for x1, y1, x2, y2 in boxes]
    rec_iou, rec_format = rewards.build("rec_iou"), rewards.build("rec_format")
    assert rec_iou(bare, **columns) == [1.0] * len(rows)
    assert rec_iou(as_json, **columns) == [1.0] * len(rows)
    assert rec_format(as_json, **columns) == [1.0] * len(rows)
    # The bare list is VLM-R1's ground-truth form but not a well-formatted answer.
    assert rec_format(bare, **columns) == [0.0] * len(rows)


def test_local_job_trains_on_the_shipped_data() -> None:
    """grpojob-rec-local.yaml's relative dataset paths resolve, from the YAML's folder, to this dataset."""
    (job,) = load_manifests(LOCAL_JOB)
    assert isinstance(job, GRPOJob)
    spec = job.spec
    assert spec.model.uri == "builtin://tiny-qwen2.5-vl"
    assert spec.task == "rec"
    assert spec.resources.accelerator == "cpu"
    assert spec.resources.world_size == 1
    assert [r.name for r in spec.rewards] == ["rec_iou", "rec_format"]
    (dataset,) = spec.datasets
    assert dataset.image_root is not None
    source = data.DataSource(LOCAL_JOB.parent / dataset.jsonl, LOCAL_JOB.parent / dataset.image_root)
    assert source.jsonl.resolve() == (SHIPPED / "train.jsonl").resolve()
    samples, report = data.load_samples([source], spec.on_bad_sample)
    assert (len(samples), report.skipped) == (SPLITS["train"], 0)
