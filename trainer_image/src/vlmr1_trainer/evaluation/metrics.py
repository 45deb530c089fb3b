"""Dataset metrics of predictions with VLM-R1's evaluation semantics, built on the rewards' parsers.

``score_predictions(task, completions, rows)`` returns the task's metrics and one
:class:`SampleResult` per sample (for error analysis):

* ``rec``: ``rec_acc``, the share of samples VLM-R1's evaluation script counts correct
  (``src/eval/test_rec_r1.py``, or ``test_rec_r1_internvl.py`` for InternVL; see
  :mod:`.rec_eval` for how it differs from the training reward): the box between ``{`` and
  ``}`` in the first answer block, rescaled to the original image with the family's
  ``image_size``/``input_size`` columns, IoU > 0.5. Also ``rec_acc_reward``: the share the
  ``rec_acc`` training reward scores 1 (first box literal, IoU >= 0.5). A missing or
  malformed box is a miss; every sample is in the denominator.
* ``ovd``: ``ap`` and ``ap50``, COCO AP@[.50:.95] and AP@.50 of the whole dataset
  (``coco_dataset_ap``: detections pooled over images, not a mean of per-image APs).
  Predictions are read as the ``od_*`` training rewards read them (last answer block,
  last json fence, no rescale) and score 1.0 each, so the dataset order is the rank order.
  Also ``od_acc`` over the samples whose ground truth is one box (``od_acc_samples`` of
  them; both absent when there are none): VLM-R1's ``src/eval/test_od_r1.py`` single-box
  accuracy (first item of the first json fence, IoU > 0.5, no rescale).
* ``math``: ``math_acc``, the share of samples the ``math`` reward verifies correct.
* ``gui``: ``gui_acc``, the share of exact matches as the ``all_match`` reward defines them.
* ``mcq``: ``mcq_acc``, the share of samples whose chosen letter is the answer's, as the ``mcq``
  reward reads it (VLM-R1's ``extract_choice`` on the answer block).

Every task also reports ``samples`` and ``unparsed`` (predictions without a usable answer;
see :class:`SampleResult`). A malformed ground truth raises :class:`EvalDataError` naming
the sample's ``source`` (file:line); a malformed prediction never raises.

>>> metrics, results = score_predictions(
...     "rec", ["<answer>[0,0,10,10]</answer>", "no answer"],
...     [{"solution": "<answer> [0, 0, 10, 12] </answer>", "source": f"rec.jsonl:{i}"} for i in (1, 2)])
>>> metrics
{'rec_acc': 0.0, 'rec_acc_reward': 0.5, 'samples': 2, 'unparsed': 2}
>>> results[0].error
'no [x1, y1, x2, y2] integer box between { and } in the first answer block'
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from vlmr1_core.config import EVAL_METRICS, EvalTask
from vlmr1_core.errors import UserError
from vlmr1_trainer.evaluation.rec_eval import (
    THRESHOLD,
    RecScript,
    od_script_box,
    rec_script_box,
    rec_script_for,
    script_iou,
)
from vlmr1_trainer.rewards._text import first_block, json_blocks, last_block
from vlmr1_trainer.rewards.accuracy import MathReward
from vlmr1_trainer.rewards.choice import AllMatchReward, MCQReward
from vlmr1_trainer.rewards.coco import Box, coco_dataset_ap
from vlmr1_trainer.rewards.detection import OdAp50Reward, ground_truth_boxes, last_json_list, prediction_boxes
from vlmr1_trainer.rewards.rec import RecAccReward, ground_truth_box
from vlmr1_trainer.rewards.registry import BadGroundTruthError, Reward, completion_text

__all__ = ["METRICS", "EvalDataError", "EvalTask", "SampleResult", "score_predictions"]

#: Headline metrics per task (the same table the GRPOJob's ``bestMetric`` is checked against).
METRICS: dict[EvalTask, tuple[str, ...]] = EVAL_METRICS

NO_BLOCK = "no <answer>…</answer> block"
_REC_FIX = "the gpt turn must be the box [x1, y1, x2, y2] in original-image pixels, with x1 < x2 and y1 < y2"
_OVD_FIX = (
    'the gpt turn must be a ```json fence holding a list of {"bbox_2d": [x1, y1, x2, y2], "label": …} '
    "(an empty list for an image without objects), or None"
)
_TEXT_FIX = "the gpt turn must hold the reference answer"


class EvalDataError(UserError, ValueError):
    """An evaluation sample's ground truth is malformed: a data error, not a wrong answer.

    >>> str(EvalDataError("val.jsonl:3", "the solution has no <answer>…</answer> block", "add one"))
    'val.jsonl:3: the solution has no <answer>…</answer> block; to fix: add one'
    """

    def __init__(self, source: str, problem: str, fix: str) -> None:
        super().__init__(problem, file=source, fix=fix)  # source is already "file:line"
        self.source, self.problem = source, problem


@dataclass
class SampleResult:
    """One sample's outcome, JSON-serialisable with ``dataclasses.asdict``.

    ``parsed`` is None exactly when the prediction is unparsed (``error`` says why):

    * rec: the box ``[x1, y1, x2, y2]`` VLM-R1's evaluation script compared, in
      original-image pixels (floats after a rescale); unparsed without an answer block or
      without an integer box literal where the script looks (between ``{`` and ``}``).
    * ovd: the well-formed predicted detections (items with a ``label`` and a
      ``bbox_2d`` of four numbers; those with a label in no ground truth of the dataset
      are listed but do not count); ``[]`` for the answers ``None`` and ``[]``;
      unparsed without an answer block or a json fence, with an empty or invalid fence,
      or with a non-empty list of which no item is a detection.
    * math, gui: the stripped text of the last answer block; unparsed without one or
      when it is empty. The rewards then compare the whole completion, as VLM-R1 does,
      so an unparsed prediction can still score 1.

    ``details`` holds what else the metrics used: for rec ``iou`` (of the box the script
    compared, ``[0, 0, 0, 0]`` when unparsed), ``reward_box`` and ``reward_score`` (the
    training reward's reading); for an ovd sample with one ground-truth box ``od_box``,
    ``od_iou`` and ``od_correct`` (test_od_r1.py's reading).

    ``score`` is 1.0 or 0.0 for rec (VLM-R1's evaluation script), math and gui. For ovd it
    is the sample's own ``od_ap50`` training reward (AP@.50 of this image alone, VLM-R1's
    conventions for empty answers, -1 when every GT box is ignored), an error-analysis aid:
    it is NOT the metric, and the dataset AP50 is not its mean.
    """

    index: int
    source: str
    prediction: str
    parsed: Any
    ground_truth: Any
    score: float
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def score_predictions(
    task: EvalTask, completions: Sequence[Any], rows: Sequence[Mapping[str, Any]], *, family: str | None = None
) -> tuple[dict[str, float], list[SampleResult]]:
    """The task's metrics over all samples (headline metrics, ``samples``, ``unparsed``) and per-sample results.

    ``rows[i]`` holds sample i's dataset columns (``solution``, ``image_size``, ``input_size``, …)
    and its ``source`` (``file:line``); ``completions[i]`` is its generated text. ``family``
    (the model family that answered) picks VLM-R1's REC script: InternVL has its own.

    >>> score_predictions("gui", ["<answer>Click OK.</answer>", "<answer>cancel</answer>"],
    ...     [{"solution": "<answer> click ok </answer>"}] * 2)[0]
    {'gui_acc': 0.5, 'samples': 2, 'unparsed': 0}
    """
    if task not in METRICS:
        raise ValueError(f"unknown evaluation task {task!r}; known tasks: {', '.join(METRICS)}")
    if len(completions) != len(rows):
        raise ValueError(f"{len(completions)} completions for {len(rows)} samples; give one per sample")
    if not rows:
        raise ValueError("no samples to score: the evaluation set is empty")
    texts = [completion_text(c) for c in completions]
    sources = [str(row.get("source") or f"sample {i}") for i, row in enumerate(rows)]
    if task == "ovd":
        headline, results = _ovd(texts, rows, sources)
    elif task == "rec":
        script = rec_script_for(family)
        results = [_rec_result(i, texts[i], rows[i], sources[i], script) for i in range(len(rows))]
        headline = {
            "rec_acc": math.fsum(r.score for r in results) / len(results),
            "rec_acc_reward": math.fsum(r.details["reward_score"] for r in results) / len(results),
        }
    else:
        scorer = _SCORERS[task]
        results = [scorer(i, texts[i], rows[i], sources[i]) for i in range(len(rows))]
        headline = {METRICS[task][0]: math.fsum(r.score for r in results) / len(results)}
    return {**headline, "samples": len(results), "unparsed": sum(r.parsed is None for r in results)}, results


@contextmanager
def _data_errors(source: str, fix: str) -> Iterator[None]:
    """Re-raise the rewards' BadGroundTruthError as an EvalDataError naming the sample."""
    try:
        yield
    except BadGroundTruthError as exc:
        raise EvalDataError(source, str(exc), fix) from exc


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


# --- REC ---------------------------------------------------------------------------------------

_REC = RecAccReward()


def _rec_result(index: int, text: str, row: Mapping[str, Any], source: str, script: RecScript) -> SampleResult:
    with _data_errors(source, _REC_FIX):
        gt = ground_truth_box(row.get("solution"))
    # The reward scores a GT that is not a box 0.0 (as VLM-R1 does); here it is a data error.
    if not (isinstance(gt, list) and len(gt) == 4 and all(_is_number(v) for v in gt)):
        raise EvalDataError(source, f"the solution's answer {gt!r} is not a box of four numbers", _REC_FIX)
    if not (gt[0] < gt[2] and gt[1] < gt[3]):
        raise EvalDataError(source, f"the solution's box {gt!r} is empty or inverted", _REC_FIX)
    size_fix = "image_size and input_size must be [width, height] (the trainer adds them from the image and model)"
    with _data_errors(source, size_fix):  # the reward validates the size columns
        reward_box = _REC.predicted_box(text, row)
        reward_score = float(_REC.score(text, row) or 0.0)
    reading = rec_script_box(text, script)
    used, iou = script_iou(reading.box, gt, row.get("image_size"), row.get("input_size"))
    details = {"iou": iou, "reward_box": reward_box, "reward_score": reward_score}
    parsed = used if reading.box is not None else None
    return SampleResult(index, source, text, parsed, gt, 1.0 if iou > THRESHOLD else 0.0, reading.error, details)


# --- math, GUI and multiple choice ------------------------------------------------------------------------------


def _text_scorer(reward: Reward) -> Callable[[int, str, Mapping[str, Any], str], SampleResult]:
    """A scorer comparing the last answer blocks with ``reward`` (``math``, ``all_match`` or ``mcq``)."""

    def result(index: int, text: str, row: Mapping[str, Any], source: str) -> SampleResult:
        solution = row.get("solution")
        gt = last_block(solution) if isinstance(solution, str) else None
        if gt is None or not gt.strip():
            problem = "the solution has no <answer>…</answer> block" if gt is None else "the solution's answer is empty"
            raise EvalDataError(source, problem, _TEXT_FIX)
        with _data_errors(source, _TEXT_FIX):
            score = reward.score(text, row)
        block = last_block(text)
        answer = block.strip() if block is not None else None
        error = NO_BLOCK if block is None else None if answer else "the answer block is empty"
        return SampleResult(index, source, text, answer or None, gt.strip(), float(score or 0.0), error)

    return result


_SCORERS = {
    "math": _text_scorer(MathReward()),
    "gui": _text_scorer(AllMatchReward()),
    "mcq": _text_scorer(MCQReward()),
}


# --- OVD ---------------------------------------------------------------------------------------

_OD_AP50 = OdAp50Reward()


def _ovd_ground_truth(row: Mapping[str, Any], source: str) -> tuple[list[Any], list[Box]]:
    """The GT items and boxes of the solution's first answer block (as the od rewards read it)."""
    solution = row.get("solution")
    block = first_block(solution) if isinstance(solution, str) else None
    if block is None:
        raise EvalDataError(source, "the solution has no <answer>…</answer> block", _OVD_FIX)
    text = block.strip()
    if text == "None":
        return [], []
    # The od rewards read a GT without a fence as "no objects"; in an evaluation set it is a typo.
    if not json_blocks(text):
        raise EvalDataError(source, f"the solution's answer {text[:80]!r} has no ```json fence", _OVD_FIX)
    with _data_errors(source, _OVD_FIX):
        items, boxes = ground_truth_boxes(text)
    return copy.deepcopy(items), boxes  # the parser's result is cached and shared: hand out a copy


def _ovd_prediction(text: str) -> tuple[list[Any] | None, str | None]:
    """(well-formed detections, None) or (None, why the answer is unusable)."""
    block = last_block(text)
    if block is None:
        return None, NO_BLOCK
    answer = block.strip()
    if answer == "None":
        return [], None
    if not json_blocks(answer):
        return None, "no ```json fence in the last answer block"
    try:
        items = last_json_list(answer)
    except (ValueError, TypeError, RecursionError) as exc:
        return None, f"the last ```json fence is not a JSON list: {exc}"
    if items is None:
        return None, "the last ```json fence is empty"
    detections = [item for item in items if prediction_boxes([item])]
    if items and not detections:
        return None, 'no item of the JSON list is a {"bbox_2d": [x1, y1, x2, y2], "label": …} detection'
    return detections, None


def _ovd(
    texts: Sequence[str], rows: Sequence[Mapping[str, Any]], sources: Sequence[str]
) -> tuple[dict[str, float], list[SampleResult]]:
    """Dataset COCO AP and AP50 (-1 when no GT box counts) and the per-sample results."""
    results: list[SampleResult] = []
    images: list[tuple[list[Box], list[Box]]] = []
    for i, (text, row, source) in enumerate(zip(texts, rows, sources, strict=True)):
        gt_items, gt = _ovd_ground_truth(row, source)  # validated before the reward reads it
        parsed, error = _ovd_prediction(text)
        with _data_errors(source, _OVD_FIX):
            score = _OD_AP50.score(text, row)
        details = _od_single_box(text, gt_items)
        results.append(SampleResult(i, source, text, parsed, gt_items, float(score or 0.0), error, details))
        images.append((gt, prediction_boxes(parsed or [])))
    # coco_dataset_ap drops the detections whose label is in no image's GT, as COCO does.
    ap, ap50 = coco_dataset_ap(images)
    headline: dict[str, float] = {"ap": ap, "ap50": ap50}
    single = [r.details["od_correct"] for r in results if r.details]
    if single:
        headline |= {"od_acc": sum(single) / len(single), "od_acc_samples": len(single)}
    return headline, results


def _od_single_box(text: str, gt_items: Sequence[Any]) -> dict[str, Any]:
    """test_od_r1.py's reading of a sample whose ground truth is one box; {} for other samples."""
    if len(gt_items) != 1 or not isinstance(gt_items[0], Mapping):
        return {}
    reading = od_script_box(text)
    used, iou = script_iou(reading.box, gt_items[0].get("bbox_2d"))
    return {"od_box": used, "od_iou": iou, "od_correct": iou > THRESHOLD}
