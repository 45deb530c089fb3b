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

>>> gt = [(0, [0.0, 0.0, 10.0, 10.0], 100.0)]
>>> round(coco_ap(gt, [(0, [0.0, 0.0, 10.0, 10.0], 100.0)])[0], 12)
1.0
>>> coco_ap(gt, [(0, [50.0, 50.0, 10.0, 10.0], 100.0)])
(0.0, 0.0)
"""

from __future__ import annotations

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
    return coco_dataset_ap([(gt, dt)])
