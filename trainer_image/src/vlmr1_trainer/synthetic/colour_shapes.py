"""``colour-shapes``: a visual multiple-choice question a tiny VLM can learn on a CPU.

Each image holds one shape (circle, square or triangle) in one of five colours; the question
is always "What colour is the shape? A. red B. green C. blue D. yellow E. purple" and the
answer is the letter, checked by VLM-R1's ``mcq`` reward. The answer turn of each sample is a
complete completion in VLM-R1's format, ``<think>The shape is blue.</think><answer>C</answer>``,
so the same file is GRPO data (the ``<answer>`` block is the ground truth) and SFT data (the
whole turn is the target).

Splits:

* ``train`` and ``val``: 56x56 images (four image tokens for the builtin tiny models), a large
  shape (28-44 px) anywhere it fits, a plain or a four-level grey noise background;
* ``ood``, a shifted distribution for generalisation: 84x84 images (nine image tokens), a
  small shape (12-20 px), always on the noise background.

``examples/data/generate_colour_shapes.py`` writes the shipped files with this module (byte
for byte the same on any machine: :mod:`vlmr1_trainer.synthetic.shapes`); a different seed
gives disjoint samples, which is what the builtin starting model is trained on.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from vlmr1_trainer.synthetic.shapes import COLOUR_INDEX, COLOURS, GREYS, KINDS, encode_png, rasterise, uniform_int

OPTIONS = tuple(COLOURS)
"""The answer options in letter order: A red, B green, C blue, D yellow, E purple."""
LETTERS = "ABCDE"
QUESTION = "What colour is the shape? " + " ".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(OPTIONS))


@dataclass(frozen=True)
class SplitShape:
    """The image side, shape sizes and background of a split."""

    side: int
    min_shape: int
    max_shape: int
    noise: float
    """Probability of the grey-noise background (else plain)."""


SPLITS = {
    "train": SplitShape(side=56, min_shape=28, max_shape=44, noise=0.5),
    "val": SplitShape(side=56, min_shape=28, max_shape=44, noise=0.5),
    "ood": SplitShape(side=84, min_shape=12, max_shape=20, noise=1.0),
}


@dataclass(frozen=True)
class Sample:
    name: str
    side: int
    pixels: tuple[int, ...]
    colour: str
    kind: str


def make_sample(seed: int, split: str, index: int) -> Sample:
    """Sample ``index`` of ``split``: independent of every other sample (its own seeded RNG)."""
    shape = SPLITS[split]
    rng = random.Random(f"colour-shapes:{seed}:{split}:{index}")
    side = shape.side
    if rng.random() < shape.noise:
        pixels = [uniform_int(rng, 0, len(GREYS) - 1) for _ in range(side * side)]
    else:
        pixels = [0] * (side * side)
    colour = OPTIONS[uniform_int(rng, 0, len(OPTIONS) - 1)]
    kind = KINDS[uniform_int(rng, 0, len(KINDS) - 1)]
    size = uniform_int(rng, shape.min_shape, shape.max_shape)
    x0, y0 = uniform_int(rng, 1, side - 1 - size), uniform_int(rng, 1, side - 1 - size)
    for x, y in rasterise(kind, x0, y0, size):
        pixels[y * side + x] = COLOUR_INDEX[colour]
    return Sample(f"{split}-{index:04d}", side, tuple(pixels), colour, kind)


def answer(colour: str) -> str:
    """The complete answer turn for a shape of ``colour``."""
    return f"<think>The shape is {colour}.</think><answer>{LETTERS[OPTIONS.index(colour)]}</answer>"


def jsonl_line(sample: Sample) -> str:
    item = {
        "id": sample.name,
        "image": f"{sample.name}.png",
        "conversations": [
            {"from": "human", "value": "<image>" + QUESTION},
            {"from": "gpt", "value": answer(sample.colour)},
        ],
    }
    return json.dumps(item, ensure_ascii=True) + "\n"


def readme(counts: dict[str, int], seed: int) -> str:
    flags = " ".join(f"--{split}-count {n}" for split, n in counts.items())
    return (
        "# colour-shapes\n\n"
        "A synthetic visual multiple-choice question in VLM-R1's JSONL format: the colour of the one\n"
        "shape in the image, A-E. The data of `examples/grpojob-colour-local.yaml` (the README's first\n"
        "command). Generated, do not edit; regenerate with\n\n"
        "    python examples/data/generate_colour_shapes.py --out examples/data/colour-shapes "
        f"{flags} --seed {seed}\n\n"
        f"- `train.jsonl` ({counts['train']}), `val.jsonl` ({counts['val']}): 56x56 images, one 28-44 px shape,\n"
        "  plain or grey-noise background.\n"
        f"- `ood.jsonl` ({counts['ood']}): the shifted split: 84x84 images, one 12-20 px shape, always on noise.\n"
        "- Each answer turn is `<think>The shape is <colour>.</think><answer><letter></answer>`.\n"
    )


def generate(out: Path, counts: dict[str, int], seed: int) -> list[Path]:
    """Write the dataset into ``out``; returns the files written (relative to ``out``)."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    written = []
    for split, count in counts.items():
        lines = []
        for index in range(count):
            sample = make_sample(seed, split, index)
            image = Path("images") / f"{sample.name}.png"
            (out / image).write_bytes(encode_png(sample.side, sample.side, sample.pixels))
            written.append(image)
            lines.append(jsonl_line(sample))
        (out / f"{split}.jsonl").write_bytes("".join(lines).encode("ascii"))
        written.append(Path(f"{split}.jsonl"))
    (out / "README.md").write_bytes(readme(counts, seed).encode("ascii"))
    written.append(Path("README.md"))
    return written
