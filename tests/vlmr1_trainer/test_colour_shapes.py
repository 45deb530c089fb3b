"""The shipped colour-shapes dataset: reproducible, loadable, answers checked against the pixels."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlmr1_trainer import data
from vlmr1_trainer.evaluation.metrics import score_predictions
from vlmr1_trainer.rewards.choice import MCQReward
from vlmr1_trainer.synthetic import colour_shapes
from vlmr1_trainer.synthetic.shapes import COLOURS, GREYS

from ._shipped import assert_regenerates

REPO = Path(__file__).resolve().parents[2]
GENERATOR = REPO / "examples" / "data" / "generate_colour_shapes.py"
SHIPPED = REPO / "examples" / "data" / "colour-shapes"
#: The parameters the shipped files were generated with (also stated in their README.md).
SHIPPED_ARGS = ["--train-count", "512", "--val-count", "64", "--ood-count", "64", "--seed", "0"]
SIDES = {"train": 56, "val": 56, "ood": 84}


def test_regenerating_reproduces_shipped_files(tmp_path: Path) -> None:
    assert_regenerates(GENERATOR, SHIPPED, SHIPPED_ARGS, tmp_path / "colour-shapes")


def test_another_seed_gives_other_images() -> None:
    shipped = colour_shapes.make_sample(0, "train", 0)
    assert colour_shapes.make_sample(0, "train", 0) == shipped
    assert all(colour_shapes.make_sample(1, "train", i).pixels != shipped.pixels for i in range(32))


@pytest.mark.parametrize("split", ["train", "val", "ood"])
def test_answers_match_the_pixels(split: str) -> None:
    samples, report = data.load_samples([data.DataSource(SHIPPED / f"{split}.jsonl", SHIPPED / "images")], "error")
    assert report.skipped == 0
    letters: Counter[str] = Counter()
    reward = MCQReward()
    for sample in samples:
        rgb = np.asarray(Image.open(sample.image_paths[0]).convert("RGB")).reshape(-1, 3)
        assert rgb.shape[0] == SIDES[split] ** 2
        shape_colours = {tuple(int(v) for v in p) for p in rgb} - set(GREYS)
        assert len(shape_colours) == 1, f"{sample.source}:{sample.line}: one shape colour expected"
        drawn = shape_colours.pop()
        (colour,) = [name for name, value in COLOURS.items() if value == drawn]
        letter = "ABCDE"[colour_shapes.OPTIONS.index(colour)]
        # The answer turn is a whole completion; the ground truth is its answer block.
        assert sample.target == f"<think>The shape is {colour}.</think><answer>{letter}</answer>"
        assert sample.solution == f"<answer> {letter} </answer>"
        assert reward([sample.target], solution=[sample.solution]) == [1.0]
        letters[letter] += 1
    assert set(letters) == set("ABCDE"), letters


def test_mcq_accuracy_metric() -> None:
    rows = [{"solution": "<answer> B </answer>", "source": f"v.jsonl:{i}"} for i in (1, 2, 3, 4)]
    completions = [
        "<think>green</think><answer>B</answer>",
        "<think>red</think><answer>A</answer>",
        "no answer block",
        "<answer>B.</answer>",
    ]
    metrics, results = score_predictions("mcq", completions, rows)
    assert metrics == {"mcq_acc": 0.5, "samples": 4, "unparsed": 1}
    assert [r.score for r in results] == [1.0, 0.0, 0.0, 1.0]
