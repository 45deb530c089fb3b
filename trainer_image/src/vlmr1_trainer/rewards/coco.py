"""COCO bbox average precision for one image or a whole dataset, vectorised with numpy.

This reproduces what pycocotools 2.0.x (``COCO``/``loadRes``/``COCOeval``, iouType
"bbox", area range "all", 100 detections) reports as ``stats[0]`` and ``stats[1]``
when every detection has score 1.0: for a single image (``coco_ap``, the case VLM-R1's
detection rewards build per sample) and for a whole dataset (``coco_dataset_ap``, the
evaluation metric), without building COCO objects. The IoU matrix, the cumulative
precision/recall and the 101-point interpolation are array operations over all
thresholds at once; only the greedy matching walks the detections in rank order, as
COCO's does. ``tests/vlmr1_trainer/test_reward_coco.py`` and ``test_coco_dataset.py``
compare it with pycocotools on random cases.

One image of a few boxes (a reward's sample) takes a plain-Python path instead:
numpy's per-call cost dominates arrays of a handful of elements. It matches and
accumulates with the same float operations, describes each precision row as a step
function over the recall points and hands numpy only the final expansion and mean, so
the result is bit-for-bit that of the array path (``test_reward_coco.py`` checks).

>>> gt = [(0, [0.0, 0.0, 10.0, 10.0], 100.0)]
>>> round(coco_ap(gt, [(0, [0.0, 0.0, 10.0, 10.0], 100.0)])[0], 12)
1.0
>>> coco_ap(gt, [(0, [50.0, 50.0, 10.0, 10.0], 100.0)])
(0.0, 0.0)
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Hashable, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETECTIONS = 100
AREA_MIN, AREA_MAX = 0.0, 1e10
_EPS = np.spacing(1)
_BROADCAST_LIMIT = 1000  # detections of a category up to which _precision broadcasts

#: (category key, [x, y, w, h], area) — COCO's view of one box.
Box = tuple[Hashable, Sequence[float], float]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def box_iou(dets: FloatArray, gts: FloatArray) -> FloatArray:
    """pycocotools' ``bbIou`` (non-crowd): IoU of every detection with every GT, ``[x, y, w, h]`` rows."""
    dx, dy, dw, dh = (dets[:, i : i + 1] for i in range(4))
    gx, gy, gw, gh = (gts[None, :, i] for i in range(4))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        iw = np.fmin(dw + dx, gw + gx) - np.fmax(dx, gx)
        ih = np.fmin(dh + dy, gh + gy) - np.fmax(dy, gy)
        inter = iw * ih
        union = dw * dh + gw * gh - inter
        iou = inter / union
    # C's ``if (w <= 0) continue`` leaves 0; NaN widths fall through, as in C.
    result: FloatArray = np.where((iw <= 0) | (ih <= 0), 0.0, iou)
    return result


def _match(ious: FloatArray, gt_ignored: BoolArray) -> tuple[BoolArray, BoolArray]:
    """COCO's greedy matching at every threshold at once; detections in rank order.

    Per threshold, a detection takes the free non-ignored GT with the highest IoU >= t
    (a later GT wins ties, COCO's ``>=``), and only when there is none an ignored one.
    """
    n_t, (n_d, n_g) = len(IOU_THRESHOLDS), ious.shape
    matched = np.zeros((n_t, n_d), dtype=bool)
    det_ignored = np.zeros((n_t, n_d), dtype=bool)
    gt_taken = np.zeros((n_t, n_g), dtype=bool)
    rows = np.arange(n_t)
    qualifies_all = ious[:, None, :] >= IOU_THRESHOLDS[None, :, None]  # (dets, thresholds, gts)
    groups = (~gt_ignored, gt_ignored)
    for d in range(n_d):
        hit = qualifies_all[d] & ~gt_taken
        best = np.full(n_t, -1)
        for group in groups:
            cand = hit & group[None, :]
            score = np.where(cand, ious[d][None, :], -np.inf)
            last = n_g - 1 - np.argmax(score[:, ::-1], axis=1)
            best = np.where(cand.any(axis=1) & (best < 0), last, best)
        found = best >= 0
        gt_taken[rows[found], best[found]] = True
        matched[:, d] = found
        det_ignored[:, d] = found & gt_ignored[np.maximum(best, 0)]
    return matched, det_ignored


def _match_scalar(ious: FloatArray, gt_ignored: BoolArray) -> tuple[BoolArray, BoolArray]:
    """COCO's matching loop verbatim, for IoU matrices with NaN (where ``iou < best`` is False)."""
    n_t, (n_d, n_g) = len(IOU_THRESHOLDS), ious.shape
    matched = np.zeros((n_t, n_d), dtype=bool)
    det_ignored = np.zeros((n_t, n_d), dtype=bool)
    for t, threshold in enumerate(IOU_THRESHOLDS.tolist()):
        taken = [False] * n_g
        for d in range(n_d):
            best, m = min(threshold, 1 - 1e-10), -1
            for g in range(n_g):
                if taken[g]:
                    continue
                if m > -1 and not gt_ignored[m] and gt_ignored[g]:
                    break
                if ious[d, g] < best:
                    continue
                best, m = float(ious[d, g]), g
            if m >= 0:
                taken[m] = True
                matched[t, d] = True
                det_ignored[t, d] = bool(gt_ignored[m])
    return matched, det_ignored


class _ImageEval(NamedTuple):
    """COCO's ``evaluateImg`` for one image and category: per-threshold TP/FP flags in rank order."""

    tp: BoolArray  # (thresholds, kept detections)
    fp: BoolArray
    npig: int  # non-ignored GT boxes


def _evaluate_image(gt: Sequence[Box], dt: Sequence[Box]) -> _ImageEval:
    """Match one image's detections of one category against its GT (either may be empty)."""
    # Python comparisons: exact for huge integers, and NaN areas are not ignored (as in COCO).
    gt_ignored = np.array([g[2] < AREA_MIN or g[2] > AREA_MAX for g in gt], dtype=bool)
    order = np.argsort(gt_ignored, kind="mergesort")
    gt_ignored = gt_ignored[order]
    dt = dt[:MAX_DETECTIONS]
    n_t, n_d, n_g = len(IOU_THRESHOLDS), len(dt), len(gt)
    matched = np.zeros((n_t, n_d), dtype=bool)
    det_ignored = np.zeros((n_t, n_d), dtype=bool)
    if n_d and n_g:
        gts = np.array([gt[i][1] for i in order], dtype=np.float64).reshape(n_g, 4)
        ious = box_iou(np.array([d[1] for d in dt], dtype=np.float64).reshape(n_d, 4), gts)
        if np.isnan(ious).any():
            matched, det_ignored = _match_scalar(ious, gt_ignored)
        else:
            matched, det_ignored = _match(ious, gt_ignored)
    if n_d:
        # An unmatched detection outside the area range is ignored, not a false positive.
        outside = np.array([d[2] < AREA_MIN or d[2] > AREA_MAX for d in dt], dtype=bool)
        det_ignored |= ~matched & outside[None, :]
    return _ImageEval(matched & ~det_ignored, ~matched & ~det_ignored, int(np.count_nonzero(~gt_ignored)))


def _precision(tp: BoolArray, fp: BoolArray, npig: int) -> FloatArray:
    """COCO's ``accumulate`` for one category: interpolated precision, shape (thresholds, recall points)."""
    n_t = len(IOU_THRESHOLDS)
    tps = np.cumsum(tp, axis=1).astype(np.float64)
    fps = np.cumsum(fp, axis=1).astype(np.float64)
    recall = tps / npig
    precision = tps / (fps + tps + _EPS)
    # Precision envelope: non-increasing from the right.
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    # COCO's searchsorted(side="left") per threshold row (recall rows are non-decreasing). The
    # count of values below is faster for one image's few detections; the row-wise calls keep
    # memory linear in a whole dataset's detections.
    if recall.shape[1] <= _BROADCAST_LIMIT:
        idx = (recall[:, :, None] < RECALL_THRESHOLDS[None, None, :]).sum(axis=1)
    else:
        idx = np.stack([np.searchsorted(row, RECALL_THRESHOLDS, side="left") for row in recall])
    padded = np.concatenate([precision, np.zeros((n_t, 1))], axis=1)
    result: FloatArray = np.take_along_axis(padded, idx, axis=1)
    return result


def coco_dataset_ap(images: Sequence[tuple[Sequence[Box], Sequence[Box]]]) -> tuple[float, float]:
    """(AP@[.50:.95], AP@.50) of a dataset of ``(gt, dt)`` images, as pycocotools' ``stats[0]``, ``stats[1]``.

    Every detection scores 1.0, so the rank order is the dataset order: image by image,
    then list order (pycocotools concatenates the images' results and sorts them by score
    with a stable sort). The categories are the GT labels of the whole dataset; for each,
    the matches of every image are pooled before precision and recall are computed, so a
    detection of a category its image has no GT of is a false positive. A detection whose
    label is in no image's GT is dropped (COCO evaluates only the GT categories). At most
    100 detections per image and category count. -1 when no category has a non-ignored GT.

    >>> cat = [("cat", [0.0, 0.0, 10.0, 10.0], 100.0)]
    >>> far = [("cat", [50.0, 50.0, 10.0, 10.0], 100.0)]
    >>> [round(v, 12) for v in coco_dataset_ap([(cat, cat), ([], far)])]  # the stray box ranks after the hit
    [1.0, 1.0]
    >>> coco_dataset_ap([([], far), (cat, cat)])  # ... or before it: precision 1/2 at full recall
    (0.5, 0.5)
    >>> coco_dataset_ap([([], far)])
    (-1.0, -1.0)
    """
    # Per category, per image index (sparse: most images show few categories).
    gt_by_cat: dict[Hashable, dict[int, list[Box]]] = {}
    for i, (gt, _) in enumerate(images):
        for g in gt:
            gt_by_cat.setdefault(g[0], {}).setdefault(i, []).append(g)
    dt_by_cat: dict[Hashable, dict[int, list[Box]]] = {cat: {} for cat in gt_by_cat}
    for i, (_, dt) in enumerate(images):
        for d in dt:
            per_image = dt_by_cat.get(d[0])
            if per_image is not None:
                per_image.setdefault(i, []).append(d)
    kept = []
    for cat, gts in gt_by_cat.items():
        dts = dt_by_cat[cat]
        # Image order is rank order; an image with neither GT nor detections adds nothing (COCO's None).
        evals = [_evaluate_image(gts.get(i, []), dts.get(i, [])) for i in sorted(gts.keys() | dts.keys())]
        npig = sum(e.npig for e in evals)
        if npig == 0:
            continue
        tp = np.concatenate([e.tp for e in evals], axis=1)
        fp = np.concatenate([e.fp for e in evals], axis=1)
        kept.append(_precision(tp, fp, npig))
    if not kept:
        return -1.0, -1.0
    stacked = np.stack(kept, axis=-1)  # (thresholds, recall points, categories), COCO's layout
    return float(np.mean(stacked)), float(np.mean(stacked[0]))


def coco_ap(gt: Sequence[Box], dt: Sequence[Box]) -> tuple[float, float]:
    """(AP@[.50:.95], AP@.50) of one image, as pycocotools' ``stats[0]`` and ``stats[1]``.

    ``gt`` and ``dt`` are in list order (detections all score 1.0, so list order is
    rank order); detections of a category with no GT are dropped. A GT whose area lies
    outside [0, 1e10] is ignored; when all are, the result is -1.
    """
    rows = _image_rows(gt, dt, _IOU_LIST) if len(gt) * len(dt) <= _PYTHON_PAIRS else None
    if rows is None:
        return coco_dataset_ap([(gt, dt)])
    if rows.size == 0:
        return -1.0, -1.0
    return float(np.mean(rows)), float(np.mean(rows[:_N_RECALL]))


def coco_ap50(gt: Sequence[Box], dt: Sequence[Box]) -> float:
    """``coco_ap(gt, dt)[1]``, matching at IoU 0.5 only.

    >>> round(coco_ap50([(0, [0.0, 0.0, 10.0, 10.0], 100.0)], [(0, [0.0, 0.0, 10.0, 6.0], 60.0)]), 12)
    1.0
    """
    rows = _image_rows(gt, dt, _IOU_LIST[:1]) if len(gt) * len(dt) <= _PYTHON_PAIRS else None
    if rows is None:
        return coco_dataset_ap([(gt, dt)])[1]
    return float(np.mean(rows)) if rows.size else -1.0


# --- One small image in plain Python -------------------------------------------------------

_IOU_LIST: list[float] = IOU_THRESHOLDS.tolist()
_RECALL_LIST: list[float] = RECALL_THRESHOLDS.tolist()
_N_RECALL = len(_RECALL_LIST)
_EPS_FLOAT = float(_EPS)
_PYTHON_PAIRS = 400  # detections x GT of an image up to which coco_ap stays in plain Python
_TP, _FP, _IGNORED = 0, 1, 2  # a detection's outcome at one IoU threshold


class _FallbackError(Exception):
    """The plain-Python path cannot promise numpy's bits (NaN, a zero union): use the array path."""


def _image_rows(gt: Sequence[Box], dt: Sequence[Box], thresholds: list[float]) -> FloatArray | None:
    """The precision array ``coco_dataset_ap`` averages for one image, in its memory layout.

    Shape (thresholds x recall points, categories) in C order, as COCO's (thresholds,
    recall points, categories) flattened; only categories with a non-ignored GT. None when
    the array path must decide (see ``_FallbackError``).
    """
    by_cat: dict[Hashable, tuple[list[Box], list[Box]]] = {}
    for g in gt:
        entry = by_cat.get(g[0])
        if entry is None:
            by_cat[g[0]] = ([g], [])
        else:
            entry[0].append(g)
    for d in dt:
        entry = by_cat.get(d[0])
        if entry is not None:
            entry[1].append(d)
    values: list[float] = []
    counts: list[int] = []
    n_cats = 0
    try:
        for gts, dts in by_cat.values():
            n_cats += _category_steps(gts, dts[:MAX_DETECTIONS], thresholds, values, counts)
    except (_FallbackError, TypeError, ValueError, OverflowError):
        return None
    flat = np.repeat(np.array(values, dtype=np.float64), counts)
    if n_cats <= 1:
        return flat
    per_row: FloatArray = np.ascontiguousarray(flat.reshape(n_cats, -1).T)
    return per_row


def _category_steps(
    gts: list[Box], dts: list[Box], thresholds: list[float], values: list[float], counts: list[int]
) -> int:
    """Append one category's precision rows as (value, repeat) steps; 1 if it counts, 0 if every GT is ignored.

    COCO's evaluateImg and accumulate with the same float operations as the array path:
    pycocotools' ``bbIou``, its greedy matching (GT sorted non-ignored first, the best free
    non-ignored GT with IoU >= t, a later one on ties, else an ignored one), the
    cumulative precision and recall, the right-to-left envelope and the recall lookup.
    """
    ignored = [g[2] < AREA_MIN or g[2] > AREA_MAX for g in gts]
    npig = ignored.count(False)
    if npig == 0:
        return 0
    if npig < len(gts):
        order = [i for i, ig in enumerate(ignored) if not ig] + [i for i, ig in enumerate(ignored) if ig]
        gts = [gts[i] for i in order]
        ignored = [ignored[i] for i in order]
    lowest = thresholds[0]
    gboxes = []
    for box in gts:
        gx, gy, gw, gh = map(float, box[1])
        gboxes.append((gx, gy, gx + gw, gy + gh, gw * gh))
    # Per detection: the GT (sorted index, IoU) it could take at the lowest threshold.
    candidates: list[list[tuple[int, float]]] = []
    outside: list[bool] = []
    for d in dts:
        dx, dy, dw, dh = map(float, d[1])
        dx2, dy2, d_area = dx + dw, dy + dh, dw * dh
        found: list[tuple[int, float]] = []
        for g, (gx, gy, gx2, gy2, g_area) in enumerate(gboxes):
            iw = min(dx2, gx2) - max(dx, gx)
            ih = min(dy2, gy2) - max(dy, gy)
            if iw <= 0 or ih <= 0:
                continue  # IoU 0 (a NaN width falls through, as in box_iou, and is caught below)
            inter = iw * ih
            union = d_area + g_area - inter
            if union == 0:
                raise _FallbackError  # numpy's 0/0 is NaN, Python's a ZeroDivisionError
            iou = inter / union
            if math.isnan(iou):
                raise _FallbackError  # COCO's loop with NaN: _match_scalar on the array path
            if iou >= lowest:
                found.append((g, iou))
        candidates.append(found)
        outside.append(d[2] < AREA_MIN or d[2] > AREA_MAX)
    # Two thresholds with the same candidates at or above them match alike: one row serves both.
    ious = sorted(iou for found in candidates for _, iou in found)
    rows: dict[int, tuple[list[float], list[int]]] = {}
    for threshold in thresholds:
        below = bisect_left(ious, threshold)
        row = rows.get(below)
        if row is None:
            row = rows[below] = _precision_steps(_outcomes(candidates, ignored, outside, threshold), npig)
        values += row[0]
        counts += row[1]
    return 1


def _outcomes(
    candidates: list[list[tuple[int, float]]], ignored: list[bool], outside: list[bool], threshold: float
) -> tuple[int, ...]:
    """Each detection's ``_TP``/``_FP``/``_IGNORED`` at one threshold, in rank order."""
    taken: set[int] = set()
    result = []
    for found, out in zip(candidates, outside, strict=True):
        best, m = threshold, -1
        for g, iou in found:
            if g in taken:
                continue
            if m > -1 and not ignored[m] and ignored[g]:
                break
            if iou < best:
                continue
            best, m = iou, g
        if m >= 0:
            taken.add(m)
            result.append(_IGNORED if ignored[m] else _TP)
        else:
            result.append(_IGNORED if out else _FP)
    return tuple(result)


def _precision_steps(outcome: tuple[int, ...], npig: int) -> tuple[list[float], list[int]]:
    """One row of ``_precision`` as steps: value ``values[j]`` for ``counts[j]`` recall points."""
    tp = fp = 0
    recall: list[float] = []
    precision: list[float] = []
    for o in outcome:
        if o == _TP:
            tp += 1
        elif o == _FP:
            fp += 1
        recall.append(tp / npig)
        precision.append(tp / (fp + tp + _EPS_FLOAT))
    for j in range(len(precision) - 2, -1, -1):
        precision[j] = max(precision[j], precision[j + 1])
    # Recall point r reads position j = #(recall < r); the recall row does not decrease.
    values, counts = [], []
    start = 0
    for p, r in zip(precision, recall, strict=True):
        end = bisect_right(_RECALL_LIST, r)
        if end > start:
            values.append(p)
            counts.append(end - start)
            start = end
    if start < _N_RECALL:
        values.append(0.0)
        counts.append(_N_RECALL - start)
    return values, counts
