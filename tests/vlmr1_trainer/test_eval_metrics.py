"""Evaluation metrics on hand-built predictions: exact metrics, per-sample results, data errors."""

from __future__ import annotations

import doctest
import json
from dataclasses import asdict
from typing import Any

import pytest

from vlmr1_trainer.evaluation import metrics as metrics_module
from vlmr1_trainer.evaluation.metrics import METRICS, EvalDataError, EvalTask, SampleResult, score_predictions

NO_BLOCK = "no <answer>…</answer> block"
EPS = 2.220446049250313e-16  # np.spacing(1): COCO's precision is tp / (tp + fp + eps)


def _rows(solution: str, n: int, name: str = "val.jsonl", **columns: Any) -> list[dict[str, Any]]:
    return [{"solution": solution, "source": f"{name}:{i + 1}", **columns} for i in range(n)]


def _single(task: EvalTask, completion: str, row: dict[str, Any]) -> tuple[dict[str, float], SampleResult]:
    metrics, results = score_predictions(task, [completion], [row])
    assert len(results) == 1
    return metrics, results[0]


def test_docstring_examples() -> None:
    result = doctest.testmod(metrics_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_metric_names() -> None:
    assert METRICS == {
        "rec": ("rec_acc", "rec_acc_reward"),
        "ovd": ("ap", "ap50", "od_acc"),
        "math": ("math_acc",),
        "gui": ("gui_acc",),
        "mcq": ("mcq_acc",),
    }


# --- REC: GT [0, 0, 10, 20] (area 200); [0, 0, 10, 10] has pixel-inclusive IoU exactly 0.5 ------
# rec_acc reads answers as VLM-R1's src/eval/test_rec_r1.py does (a box between { and }, the
# last such, IoU > 0.5); rec_acc_reward as the rec_acc training reward (first literal, >= 0.5).
# tests/vlmr1_trainer/test_eval_rec_script.py has the parser's own cases.

REC_GT = "<answer> [0, 0, 10, 20] </answer>"
NO_BOX = "no [x1, y1, x2, y2] integer box between { and } in the first answer block"

# (completion, extra columns, score, parsed, error, reward score)
REC_CASES: list[tuple[str, dict[str, Any], float, Any, str | None, float]] = [
    ('<think>left</think><answer>{"bbox_2d": [0,0,10,20]}</answer>', {}, 1.0, [0, 0, 10, 20], None, 1.0),
    ('<answer>{"bbox_2d": [0, 0, 10, 10]}</answer>', {}, 0.0, [0, 0, 10, 10], None, 1.0),  # IoU 0.5: > fails
    ('<answer>{"bbox_2d": [0, 0, 10, 11]}</answer>', {}, 1.0, [0, 0, 10, 11], None, 1.0),  # IoU 0.55
    ('<answer>{"bbox_2d": [0,0,10,9]}</answer>', {}, 0.0, [0, 0, 10, 9], None, 0.0),  # IoU 0.45
    ("<answer>[0,0,10,20]</answer>", {}, 0.0, None, NO_BOX, 1.0),  # a bare box: no braces, no answer
    ("[0,0,10,20]", {}, 0.0, None, NO_BLOCK, 0.0),
    ("<answer>the dog on the left</answer>", {}, 0.0, None, NO_BOX, 0.0),
    ('<answer>{"bbox_2d": [0.0, 0.0, 10.0, 20.0]}</answer>', {}, 0.0, None, NO_BOX, 0.0),  # integers only
    # Several boxes: the script takes the last one inside the braces, the reward the first.
    ('<answer>{"a": [0,0,10,20], "b": [100,100,120,120]}</answer>', {}, 0.0, [100, 100, 120, 120], None, 1.0),
    ('<answer>{"a": [100,100,120,120], "b": [0,0,10,20]}</answer>', {}, 1.0, [0, 0, 10, 20], None, 0.0),
    (
        '<answer>{"bbox_2d": [9,9,99,99]}</answer><answer>{"bbox_2d": [0,0,10,20]}</answer>',
        {},
        0.0,
        [9, 9, 99, 99],
        None,
        0.0,
    ),
    # Model-input frame 28x28 of a 10x20 image: [0, 0, 28, 28] is the whole image, the GT box.
    (
        '<answer>{"bbox_2d": [0,0,28,28]}</answer>',
        {"image_size": [10, 20], "input_size": [28, 28]},
        1.0,
        [0.0, 0.0, 10.0, 20.0],
        None,
        1.0,
    ),
    ('<answer>{"bbox_2d": [0,0,28,28]}</answer>', {}, 0.0, [0, 0, 28, 28], None, 0.0),  # unscaled: a miss
    # A multi-image sample carries one size per image; the first image's sizes count.
    (
        '<answer>{"bbox_2d": [0,0,14,28]}</answer>',
        {"image_size": [[20, 20], [500, 500]], "input_size": [[28, 28], [56, 56]]},
        1.0,
        [0.0, 0.0, 10.0, 20.0],
        None,
        1.0,
    ),
]


@pytest.mark.parametrize(("completion", "columns", "score", "parsed", "error", "reward"), REC_CASES)
def test_rec_samples(
    completion: str, columns: dict[str, Any], score: float, parsed: Any, error: str | None, reward: float
) -> None:
    metrics, result = _single("rec", completion, {"solution": REC_GT, "source": "rec.jsonl:4", **columns})
    assert (result.score, result.parsed, result.error) == (score, parsed, error)
    assert result.details["reward_score"] == reward
    assert (result.index, result.source, result.prediction, result.ground_truth) == (
        0,
        "rec.jsonl:4",
        completion,
        [0, 0, 10, 20],
    )
    assert metrics == {"rec_acc": score, "rec_acc_reward": reward, "samples": 1, "unparsed": int(parsed is None)}


def test_rec_dataset_accuracy_counts_every_sample() -> None:
    completions = [c for c, *_ in REC_CASES]
    rows = [{"solution": REC_GT, "source": f"rec.jsonl:{i}", **cols} for i, (_, cols, *_) in enumerate(REC_CASES)]
    metrics, results = score_predictions("rec", completions, rows)
    # 5 script hits and 7 reward hits of 14; the 4 unparsed are misses in the denominator, not skipped.
    assert metrics == {"rec_acc": 5 / 14, "rec_acc_reward": 7 / 14, "samples": 14, "unparsed": 4}
    assert [r.index for r in results] == list(range(14))
    json.dumps([asdict(r) for r in results])


@pytest.mark.parametrize(
    ("completion", "internvl", "qwen"),
    [
        ("<answer>[0,0,10,20]</answer>", 1.0, 0.0),  # InternVL's script needs no braces
        ('<answer>{"a": [0,0,10,20], "b": [100,100,120,120]}</answer>', 1.0, 0.0),  # first box, not last
        ("<answer>[0,0,10,10]</answer>", 0.0, 0.0),  # IoU 0.5 is still a miss
    ],
)
def test_internvl_answers_are_read_with_vlm_r1s_internvl_script(completion: str, internvl: float, qwen: float) -> None:
    row = {"solution": REC_GT, "source": "rec.jsonl:1"}
    assert score_predictions("rec", [completion], [row], family="internvl")[0]["rec_acc"] == internvl
    assert score_predictions("rec", [completion], [row], family="qwen2.5-vl")[0]["rec_acc"] == qwen


# --- OVD ---------------------------------------------------------------------------------------


def _det(label: str, box: list[int]) -> dict[str, Any]:
    return {"bbox_2d": box, "label": label}


def _answer(items: list[dict[str, Any]] | str) -> str:
    body = items if isinstance(items, str) else "```json\n" + json.dumps(items) + "\n```"
    return f"<think>look</think><answer>{body}</answer>"


def _solution(items: list[dict[str, Any]] | str) -> str:
    body = items if isinstance(items, str) else "```json\n" + json.dumps(items) + "\n```"
    return f"<answer> {body} </answer>"


CAT1, CAT2, MISS = _det("cat", [0, 0, 10, 10]), _det("cat", [20, 20, 40, 40]), _det("cat", [100, 100, 120, 120])
DOG = _det("dog", [50, 50, 70, 70])


def test_ovd_is_pooled_over_the_dataset_not_a_mean_of_images() -> None:
    """Image 1: a hit (AP50 1); image 2: a miss ranked before a hit (AP50 0.5). The mean would be 0.75."""
    rows = [
        {"solution": _solution([CAT1]), "source": "od.jsonl:1"},
        {"solution": _solution([CAT2]), "source": "od.jsonl:2"},
    ]
    metrics, results = score_predictions("ovd", [_answer([CAT1]), _answer([MISS, CAT2])], rows)
    per_image = [r.score for r in results]
    assert per_image == pytest.approx([1.0, 0.5], abs=1e-12)
    assert sum(per_image) / 2 == pytest.approx(0.75, abs=1e-12)
    # Pooled ranking hit, miss, hit over 2 GT: precision 1 up to recall 0.5 (51 recall points), then 2/3.
    pooled = (51 / (1 + EPS) + 50 * 2 / (3 + EPS)) / 101
    assert metrics["ap50"] == pytest.approx(pooled, abs=1e-12)
    assert metrics["ap"] == pytest.approx(metrics["ap50"], abs=1e-15)  # exact boxes: every IoU threshold agrees
    assert (metrics["samples"], metrics["unparsed"]) == (2, 0)
    assert results[1].parsed == [MISS, CAT2] and results[1].ground_truth == [CAT2] and results[1].error is None
    # Every OVD metric a bestMetric or a gate may name is measured (one GT box per image: od_acc too).
    assert set(METRICS["ovd"]) <= set(metrics)


@pytest.mark.parametrize(
    ("order", "ap50"),
    [((0, 1), 1 / (1 + EPS)), ((1, 0), 0.5)],  # the FP ranks after the hit (harmless) or before it
)
def test_ovd_predictions_on_an_image_without_gt_are_false_positives(order: tuple[int, int], ap50: float) -> None:
    samples = [
        (_answer([CAT1]), {"solution": _solution([CAT1]), "source": "od.jsonl:1"}),
        (_answer([MISS]), {"solution": "<answer> None </answer>", "source": "od.jsonl:2"}),
    ]
    picked = [samples[i] for i in order]
    metrics, results = score_predictions("ovd", [c for c, _ in picked], [r for _, r in picked])
    assert metrics["ap50"] == pytest.approx(ap50, abs=1e-15)
    none_gt = next(r for r in results if r.source == "od.jsonl:2")
    assert (none_gt.ground_truth, none_gt.parsed, none_gt.score) == ([], [MISS], 0.0)


def test_ovd_labels_in_no_gt_are_dropped_but_known_labels_elsewhere_count() -> None:
    rows = [{"solution": _solution([CAT1]), "source": "od.jsonl:1"}]
    metrics, results = score_predictions("ovd", [_answer([DOG, CAT1])], rows)
    assert metrics["ap50"] == pytest.approx(1.0, abs=1e-12)  # "dog" is no category: dropped, not an FP
    assert results[0].parsed == [DOG, CAT1]  # listed for error analysis all the same
    # Once another image has a dog, image 1's dog is a false positive of that category.
    rows.append({"solution": _solution([DOG]), "source": "od.jsonl:2"})
    metrics, _ = score_predictions("ovd", [_answer([DOG, CAT1]), _answer([DOG])], rows)
    assert metrics["ap50"] == pytest.approx((1 / (1 + EPS) + 0.5) / 2, abs=1e-15)


# (completion, parsed, error): none of them detects the cat.
OVD_UNUSABLE: list[tuple[str, Any, str | None]] = [
    ("I see a cat.", None, NO_BLOCK),
    ("<answer>a cat at [0, 0, 10, 10]</answer>", None, "no ```json fence in the last answer block"),
    ('<answer>```json [{"bbox_2d": [0, 0, 10, 10], ```</answer>', None, "the last ```json fence is not a JSON list"),
    ("<answer>```json ```</answer>", None, "the last ```json fence is empty"),
    ('<answer>```json ["cat", {"label": "cat"}] ```</answer>', None, "no item of the JSON list is a"),
    ("<answer>```json [] ```</answer>", [], None),  # an explicit empty answer is parsed
    ("<answer>None</answer>", [], None),
]


@pytest.mark.parametrize(("completion", "parsed", "error"), OVD_UNUSABLE)
def test_ovd_unusable_predictions(completion: str, parsed: Any, error: str | None) -> None:
    metrics, result = _single("ovd", completion, {"solution": _solution([CAT1]), "source": "od.jsonl:9"})
    assert result.parsed == parsed
    assert result.error is None if error is None else (result.error or "").startswith(error)
    # test_od_r1.py's single-box accuracy finds no box in any of them either.
    assert metrics == {
        "ap": 0.0,
        "ap50": 0.0,
        "od_acc": 0.0,
        "od_acc_samples": 1,
        "samples": 1,
        "unparsed": int(parsed is None),
    }


def test_ovd_dataset_without_predictions_and_without_gt() -> None:
    rows = _rows(_solution([CAT1, DOG]), 3, "od.jsonl")
    metrics, _ = score_predictions("ovd", [c for c, *_ in OVD_UNUSABLE[:3]], rows)
    assert metrics == {"ap": 0.0, "ap50": 0.0, "samples": 3, "unparsed": 3}
    metrics, results = score_predictions("ovd", ["<answer>None</answer>"], _rows("<answer> None </answer>", 1))
    assert metrics == {"ap": -1.0, "ap50": -1.0, "samples": 1, "unparsed": 0}  # COCO: no category counts
    assert results[0].score == 1.0  # od_ap50's None/None convention, an error-analysis aid only


def test_ovd_single_box_accuracy_follows_test_od_r1() -> None:
    """od_acc: the first item of the first json fence anywhere in the completion, IoU > 0.5,
    over the samples whose ground truth is one box; the others are not counted."""
    fence = "```json\n" + json.dumps([CAT1]) + "\n```"
    later = "```json\n" + json.dumps([MISS]) + "\n```"
    half = _det("cat", [0, 0, 10, 5])  # IoU with CAT1 exactly 0.5
    samples = [
        (f"<think>{fence}</think>no answer block", [CAT1], True),  # read without an answer block
        (_answer([MISS, CAT2]), [CAT2], False),  # only the first item counts
        (f"{fence} then {later}", [CAT1], True),  # the first fence, not the last
        (_answer([half]), [CAT1], False),
        ('<answer>```json {"bbox_2d": [0, 0, 10, 10]} ```</answer>', [CAT1], False),  # an object has no [0]
        (_answer([CAT1]), [CAT1, DOG], None),  # two GT boxes: not a single-box sample
    ]
    rows = [{"solution": _solution(gt), "source": f"od.jsonl:{i}"} for i, (_, gt, _) in enumerate(samples, 1)]
    metrics, results = score_predictions("ovd", [c for c, *_ in samples], rows)
    assert (metrics["od_acc"], metrics["od_acc_samples"]) == (2 / 5, 5)
    assert [r.details.get("od_correct") for r in results] == [hit for *_, hit in samples]
    assert results[0].details["od_box"] == [0, 0, 10, 10] and results[0].parsed is None  # COCO needs the block
    assert results[3].details["od_iou"] == 0.5
    assert results[4].details["od_box"] == [0, 0, 0, 0]  # VLM-R1's placeholder for "no box"
    # No single-box sample: no od_acc at all rather than a made-up value.
    metrics, _ = score_predictions("ovd", [_answer([CAT1])], [{"solution": _solution([CAT1, DOG])}])
    assert "od_acc" not in metrics and "od_acc_samples" not in metrics


# --- math and GUI ------------------------------------------------------------------------------

MATH_CASES: list[tuple[str, float, Any, str | None]] = [
    ("<think>1/2</think><answer>\\frac{1}{2}</answer>", 1.0, "\\frac{1}{2}", None),  # LaTeX equivalence
    ("<answer>\\boxed{\\frac{1}{2}}</answer>", 1.0, "\\boxed{\\frac{1}{2}}", None),
    ("<answer>0.5</answer>", 1.0, "0.5", None),
    ("<answer>0.4</answer>", 0.0, "0.4", None),
    ("<answer>no idea</answer>", 0.0, "no idea", None),
    ("I cannot tell", 0.0, None, NO_BLOCK),
    ("<answer> </answer>", 0.0, None, "the answer block is empty"),
]


@pytest.mark.parametrize(("completion", "score", "parsed", "error"), MATH_CASES)
def test_math_samples(completion: str, score: float, parsed: Any, error: str | None) -> None:
    _, result = _single("math", completion, {"solution": "<answer> 1/2 </answer>", "source": "m.jsonl:2"})
    assert (result.score, result.parsed, result.error, result.ground_truth) == (score, parsed, error, "1/2")


def test_math_dataset_accuracy() -> None:
    completions = [c for c, *_ in MATH_CASES]
    metrics, _ = score_predictions("math", completions, _rows("<answer> 1/2 </answer>", len(completions)))
    assert metrics == {"math_acc": 3 / 7, "samples": 7, "unparsed": 2}


GUI_CASES: list[tuple[str, float]] = [
    ("<answer>click ok</answer>", 1.0),
    ("<answer>Click OK.</answer>", 1.0),  # case and trailing dots are ignored
    ("<answer>  click ok \n</answer>", 1.0),  # so is surrounding whitespace
    ("<answer>click\nok</answer>", 1.0),  # a newline reads as a space
    ("<answer>click  ok</answer>", 0.0),  # inner spaces are not folded
    ("<answer>click cancel</answer>", 0.0),
    ("click ok", 1.0),  # no answer block: VLM-R1 compares the whole completion (counted unparsed)
]


@pytest.mark.parametrize(("completion", "score"), GUI_CASES)
def test_gui_samples(completion: str, score: float) -> None:
    _, result = _single("gui", completion, {"solution": "<answer> Click OK </answer>", "source": "g.jsonl:1"})
    assert result.score == score
    assert result.ground_truth == "Click OK"


def test_gui_dataset_accuracy() -> None:
    completions = [c for c, _ in GUI_CASES]
    metrics, results = score_predictions("gui", completions, _rows("<answer> Click OK </answer>", len(completions)))
    assert metrics == {"gui_acc": 5 / 7, "samples": 7, "unparsed": 1}
    assert (results[-1].parsed, results[-1].error) == (None, NO_BLOCK)
    assert results[2].parsed == "click ok"


# --- malformed ground truth: a data error naming the sample ------------------------------------

BAD_GT: list[tuple[EvalTask, dict[str, Any], str]] = [
    ("rec", {"solution": "[0, 0, 10, 20]"}, "no <answer>"),
    ("rec", {"solution": "<answer> the dog </answer>"}, "not valid JSON"),
    ("rec", {"solution": "<answer> [0, 0, 10] </answer>"}, "not a box of four numbers"),
    ("rec", {"solution": "<answer> [0, 0, true, 10] </answer>"}, "not a box of four numbers"),
    ("rec", {"solution": "<answer> [10, 0, 0, 20] </answer>"}, "empty or inverted"),
    ("rec", {"solution": REC_GT, "image_size": [0, 20], "input_size": [28, 28]}, "image_size must be"),
    ("rec", {"solution": None}, "solution must be a string"),
    ("ovd", {"solution": "<answer> cat </answer>"}, "has no ```json fence"),
    ("ovd", {"solution": '<answer> ```json [{"label": "cat"] ``` </answer>'}, "json block is invalid"),
    ("ovd", {"solution": _solution([{"label": "cat"}])}, "is not {'label'"),
    ("ovd", {"solution": "no tags"}, "no <answer>"),
    ("math", {"solution": "1/2"}, "no <answer>"),
    ("math", {"solution": "<answer>  </answer>"}, "answer is empty"),
    ("gui", {"solution": 3}, "no <answer>"),
]


@pytest.mark.parametrize(("task", "row", "problem"), BAD_GT)
def test_malformed_ground_truth_is_a_data_error(task: EvalTask, row: dict[str, Any], problem: str) -> None:
    rows = [{"solution": {"rec": REC_GT, "ovd": _solution([CAT1])}.get(task, "<answer> a </answer>")}, row]
    rows = [{**r, "source": f"data/val.jsonl:{i + 7}"} for i, r in enumerate(rows)]
    with pytest.raises(EvalDataError) as caught:
        score_predictions(task, ["<answer>whatever</answer>"] * 2, rows)
    message = str(caught.value)
    assert message.startswith("data/val.jsonl:8: ") and problem in message and "to fix: " in message
    assert isinstance(caught.value, ValueError) and caught.value.source == "data/val.jsonl:8"


def test_malformed_predictions_never_raise() -> None:
    weird = ["", "<answer>", "</answer><answer>", "<answer>```json [[[[]]]] ```</answer>", "<answer>[9" * 50]
    for task, solution in [("rec", REC_GT), ("ovd", _solution([CAT1])), ("math", "<answer>1</answer>")]:
        metrics, _ = score_predictions(task, weird, _rows(solution, len(weird)))  # type: ignore[arg-type]
        assert metrics["samples"] == 5


def test_bad_calls() -> None:
    with pytest.raises(ValueError, match="unknown evaluation task"):
        score_predictions("vqa", ["a"], _rows("<answer>a</answer>", 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2 completions for 1 samples"):
        score_predictions("gui", ["a", "b"], _rows("<answer>a</answer>", 1))
    with pytest.raises(ValueError, match="empty"):
        score_predictions("gui", [], [])
