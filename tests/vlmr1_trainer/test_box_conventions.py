"""One ground-truth box, written the way each family answers it, scores IoU 1.0 through rec_iou
and rec_acc: the family's box convention and the columns it adds undo its frame exactly.

The image is 112 x 56 pixels, which every builtin processor keeps as is (a multiple of 28 inside
its pixel bounds), and the box [28, 14, 84, 42] lands on whole numbers in every frame: the same
pixels for Qwen2.5-VL's model input, [250, 250, 750, 750] on the 0..1000 grid of Qwen3-VL,
Qwen3.5, GLM-4.1V and InternVL.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vlmr1_trainer import rewards
from vlmr1_trainer.vlm import get_family
from vlmr1_trainer.vlm.registry import family_names

IMAGE = (112, 56)
GROUND_TRUTH = [28, 14, 84, 42]
SOLUTION = f"<answer> {GROUND_TRUTH} </answer>"


def _boxes(box: list[int]) -> str:
    return ", ".join(str(v) for v in box)


# How each family writes a box in its answer (model cards and VLM-R1's prompts): Qwen's JSON with
# bbox_2d, GLM-V's <|begin_of_box|> markers, InternVL's <box>[[...]]</box>.
ANSWERS: dict[str, Callable[[list[int]], str]] = {
    "qwen2.5-vl": lambda b: f'<answer>```json\n[{{"bbox_2d": [{_boxes(b)}], "label": "cat"}}]\n```</answer>',
    "qwen3-vl": lambda b: f'<answer>```json\n[{{"bbox_2d": [{_boxes(b)}], "label": "cat"}}]\n```</answer>',
    "qwen3.5": lambda b: f'<answer>```json\n[{{"bbox_2d": [{_boxes(b)}], "label": "cat"}}]\n```</answer>',
    "glm4.1v": lambda b: f"<answer><|begin_of_box|>[{_boxes(b)}]<|end_of_box|></answer>",
    "internvl": lambda b: f"<answer><ref>cat</ref><box>[[{_boxes(b)}]]</box></answer>",
}
EXPECTED_FRAME = {
    "qwen2.5-vl": [28, 14, 84, 42],  # pixels of the model input, which is the image itself here
    "qwen3-vl": [250, 250, 750, 750],
    "qwen3.5": [250, 250, 750, 750],
    "glm4.1v": [250, 250, 750, 750],
    "internvl": [250, 250, 750, 750],
}
BUILTINS = {
    "qwen2.5-vl": "tiny-qwen2.5-vl",
    "qwen3-vl": "tiny-qwen3-vl",
    "qwen3.5": "tiny-qwen3.5",
    "glm4.1v": "tiny-glm4.1v",
    "internvl": "tiny-internvl",
}


def test_every_family_is_in_the_table() -> None:
    assert sorted(ANSWERS) == sorted(EXPECTED_FRAME) == sorted(BUILTINS) == family_names()


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_the_same_box_in_each_familys_convention_scores_one(name: str) -> None:
    family = get_family(name)
    processor = family.load_processor(f"builtin://{BUILTINS[name]}")
    columns = family.dataset_columns([IMAGE], processor)
    frame = family.box_convention.from_original(GROUND_TRUTH, IMAGE, columns.get("input_size"))
    assert frame == EXPECTED_FRAME[name]
    answer = ANSWERS[name]([int(v) for v in frame])
    batch = {"solution": [SOLUTION], **{k: [v] for k, v in columns.items()}}
    assert rewards.build("rec_iou")([answer], **batch) == [1.0]
    assert rewards.build("rec_acc")([answer], **batch) == [1.0]
    # The same numbers read as original pixels would miss: the columns are what make it right.
    if columns and name != "qwen2.5-vl":
        assert rewards.build("rec_iou")([answer], solution=[SOLUTION]) != [1.0]
