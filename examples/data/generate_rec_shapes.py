#!/usr/bin/env python3
"""Generate ``rec-shapes``: a tiny synthetic REC (referring expression -> box) dataset in VLM-R1's format.

Each image (64-112 px a side, a plain or a four-level grey noise background) holds one
to three coloured shapes (circle, square, triangle) that never touch. Each sample refers
to exactly one of them ("the red circle", "the blue square on the left", "the triangle",
"the green shape", "the leftmost shape") and its answer is that shape's box
``[x1, y1, x2, y2]`` in original-image pixels, the tight box of the shape's pixels with
an exclusive right/bottom edge (COCO's ``x + w``), which is what VLM-R1's pixel-inclusive
IoU (``rec_iou``) scores 1.0 against itself.

    python examples/data/generate_rec_shapes.py --out examples/data/rec-shapes --count 48 --val-count 16 --seed 0

writes ``train.jsonl``, ``val.jsonl``, ``images/<split>-<index>.png`` and ``README.md``.

The shipped files must be reproducible byte for byte on any machine (a test regenerates
them and compares): shapes are drawn and PNGs written by :mod:`vlmr1_trainer.synthetic.shapes`
(standard library only; its docstring says why), and randomness comes from ``random.Random``
seeded with a string per sample and only its ``random()`` method.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vlmr1_trainer.synthetic.shapes import COLOUR_INDEX, COLOURS, GREYS, KINDS, encode_png, rasterise, uniform_int

QUESTION = "Please provide the bounding box coordinate of the region this sentence describes: {expression}."
MIN_SIDE, MAX_SIDE = 64, 112
MIN_SHAPE, MAX_SHAPE = 14, 30
#: Empty pixels kept between shapes and between a shape and the image border.
GAP = 3

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Shape:
    """One drawn shape: its name parts and the box of its pixels (exclusive right/bottom)."""

    colour: str
    kind: str
    box: Box
    pixels: frozenset[tuple[int, int]]


@dataclass(frozen=True)
class Scene:
    """One sample: the image, its shapes, the referred shape and its expression."""

    name: str
    width: int
    height: int
    background: tuple[int, ...]
    """Palette index of every pixel, row by row, before the shapes are drawn."""
    shapes: tuple[Shape, ...]
    target: int
    expression: str

    def pixels(self) -> list[int]:
        """Palette index of every pixel, row by row, shapes drawn."""
        out = list(self.background)
        for shape in self.shapes:
            index = COLOUR_INDEX[shape.colour]
            for x, y in shape.pixels:
                out[y * self.width + x] = index
        return out


def _choice(rng: random.Random, items: Sequence[str]) -> str:
    return items[uniform_int(rng, 0, len(items) - 1)]


def _bbox(pixels: frozenset[tuple[int, int]]) -> Box:
    xs = [x for x, _ in pixels]
    ys = [y for _, y in pixels]
    return min(xs), min(ys), max(xs) + 1, max(ys) + 1


def _apart(a: Box, b: Box) -> bool:
    return a[2] + GAP <= b[0] or b[2] + GAP <= a[0] or a[3] + GAP <= b[1] or b[3] + GAP <= a[1]


def _left_of_all(box: Box, others: Sequence[Box]) -> bool:
    return all(box[2] <= o[0] for o in others)


def _right_of_all(box: Box, others: Sequence[Box]) -> bool:
    return all(o[2] <= box[0] for o in others)


def expressions(shapes: Sequence[Shape], target: int) -> list[str]:
    """Every expression of the grammar that picks ``shapes[target]`` and no other shape.

    Grammar: "the C K", "the K", "the C shape", "the C K on the left|right" (two shapes
    share colour and kind and one lies wholly left of the other), "the leftmost|rightmost
    shape" (the shape lies wholly left/right of every other one).
    """
    t = shapes[target]
    others = [s for i, s in enumerate(shapes) if i != target]
    same = [s for s in others if (s.colour, s.kind) == (t.colour, t.kind)]
    found = []
    if not same:
        found.append(f"the {t.colour} {t.kind}")
    if all(s.kind != t.kind for s in others):
        found.append(f"the {t.kind}")
    if all(s.colour != t.colour for s in others):
        found.append(f"the {t.colour} shape")
    if len(same) == 1:
        if _left_of_all(t.box, [same[0].box]):
            found.append(f"the {t.colour} {t.kind} on the left")
        elif _right_of_all(t.box, [same[0].box]):
            found.append(f"the {t.colour} {t.kind} on the right")
    if others and _left_of_all(t.box, [s.box for s in others]):
        found.append("the leftmost shape")
    if others and _right_of_all(t.box, [s.box for s in others]):
        found.append("the rightmost shape")
    return found


def make_scene(seed: int, split: str, index: int) -> Scene:
    """Sample ``index`` of ``split``: independent of every other sample (its own seeded RNG)."""
    rng = random.Random(f"rec-shapes:{seed}:{split}:{index}")
    while True:  # redraw until the shapes fit and the target has an unambiguous expression
        width, height = uniform_int(rng, MIN_SIDE, MAX_SIDE), uniform_int(rng, MIN_SIDE, MAX_SIDE)
        if rng.random() < 0.5:
            background = tuple([0] * (width * height))
        else:
            background = tuple(uniform_int(rng, 0, len(GREYS) - 1) for _ in range(width * height))
        count = uniform_int(rng, 1, 3)
        shapes: list[Shape] = []
        for _ in range(40 * count):  # bounded placement attempts
            if len(shapes) == count:
                break
            size = uniform_int(rng, MIN_SHAPE, min(MAX_SHAPE, width - 2 * GAP, height - 2 * GAP))
            x0, y0 = uniform_int(rng, GAP, width - GAP - size), uniform_int(rng, GAP, height - GAP - size)
            # Repeats of a colour or kind make the qualified expressions ("on the left") occur.
            colour = _choice(rng, list(COLOURS)[:3]) if rng.random() < 0.6 else _choice(rng, list(COLOURS))
            kind = _choice(rng, KINDS)
            pixels = rasterise(kind, x0, y0, size)
            box = _bbox(pixels)
            if all(_apart(box, s.box) for s in shapes):
                shapes.append(Shape(colour, kind, box, pixels))
        if len(shapes) != count:
            continue
        target = uniform_int(rng, 0, count - 1)
        candidates = expressions(shapes, target)
        # Qualified expressions only exist for repeated colour-kind pairs, which are rare;
        # prefer them when they exist so the data has some that need spatial reasoning.
        qualified = [e for e in candidates if " on the " in e]
        if qualified and rng.random() < 0.75:
            candidates = qualified
        if candidates:
            return Scene(
                name=f"{split}-{index:04d}",
                width=width,
                height=height,
                background=background,
                shapes=tuple(shapes),
                target=target,
                expression=_choice(rng, candidates),
            )


def jsonl_line(scene: Scene) -> str:
    """The scene as one VLM-R1 JSONL line: the answer is the target's box as a JSON list."""
    box = list(scene.shapes[scene.target].box)
    item = {
        "id": scene.name,
        "image": f"{scene.name}.png",
        "conversations": [
            {"from": "human", "value": "<image>" + QUESTION.format(expression=scene.expression)},
            {"from": "gpt", "value": json.dumps(box)},
        ],
    }
    return json.dumps(item, ensure_ascii=True) + "\n"


def readme(count: int, val_count: int, seed: int) -> str:
    return (
        "# rec-shapes\n\n"
        "A tiny synthetic REC dataset (referring expression -> box) in VLM-R1's JSONL format, for\n"
        "`examples/grpojob-rec-local.yaml` and tests. Generated, do not edit; regenerate with\n\n"
        f"    python examples/data/generate_rec_shapes.py --out examples/data/rec-shapes --count {count} "
        f"--val-count {val_count} --seed {seed}\n\n"
        f"- `train.jsonl`: {count} samples; `val.jsonl`: {val_count} samples; images in `images/`.\n"
        "- Each image (64-112 px a side) holds 1-3 non-touching coloured shapes; the question names one\n"
        "  unambiguously and the answer is its box `[x1, y1, x2, y2]` in original-image pixels\n"
        "  (tight, right/bottom edge exclusive).\n"
    )


def generate(out: Path, count: int, val_count: int, seed: int) -> list[Path]:
    """Write the dataset into ``out``; returns the files written (relative to ``out``)."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    written = []
    for split, n in (("train", count), ("val", val_count)):
        lines = []
        for index in range(n):
            scene = make_scene(seed, split, index)
            image = Path("images") / f"{scene.name}.png"
            (out / image).write_bytes(encode_png(scene.width, scene.height, scene.pixels()))
            written.append(image)
            lines.append(jsonl_line(scene))
        (out / f"{split}.jsonl").write_bytes("".join(lines).encode("ascii"))
        written.append(Path(f"{split}.jsonl"))
    (out / "README.md").write_bytes(readme(count, val_count, seed).encode("ascii"))
    written.append(Path("README.md"))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--count", type=int, default=48, help="training samples (default 48)")
    parser.add_argument("--val-count", type=int, default=16, help="validation samples (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    args = parser.parse_args(argv)
    if args.count < 1 or args.val_count < 0:
        parser.error("--count must be at least 1 and --val-count at least 0")
    files = generate(args.out, args.count, args.val_count, args.seed)
    print(f"wrote {len(files)} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
