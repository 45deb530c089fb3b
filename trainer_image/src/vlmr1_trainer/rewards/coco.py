"""COCO bbox average precision for one image, vectorised with numpy.

This reproduces what pycocotools 2.0.x (``COCO``/``loadRes``/``COCOeval``, iouType
"bbox", area range "all", 100 detections) reports as ``stats[0]`` and ``stats[1]``
for a single image whose detections all have score 1.0 — the case VLM-R1's
detection rewards build per sample — without building COCO objects. The IoU matrix,
the cumulative precision/recall and the 101-point interpolation are array
operations over all thresholds at once; only the greedy matching walks the
detections in rank order, as COCO's does. ``tests/vlmr1_trainer/test_coco.py``
compares it with pycocotools on random cases.

>>> gt = [(0, [0.0, 0.0, 10.0, 10.0], 100.0)]
>>> round(coco_ap(gt, [(0, [0.0, 0.0, 10.0, 10.0], 100.0)])[0], 12)
1.0
>>> coco_ap(gt, [(0, [50.0, 50.0, 10.0, 10.0], 100.0)])
(0.0, 0.0)
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import numpy.typing as npt

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETECTIONS = 100
AREA_MIN, AREA_MAX = 0.0, 1e10
_EPS = np.spacing(1)

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


def _category_precision(gt: list[Box], dt: list[Box]) -> FloatArray | None:
    """Interpolated precision, shape (thresholds, recall points); None when every GT is ignored."""
    # Python comparisons: exact for huge integers, and NaN areas are not ignored (as in COCO).
    gt_ignored = np.array([g[2] < AREA_MIN or g[2] > AREA_MAX for g in gt], dtype=bool)
    npig = int(np.count_nonzero(~gt_ignored))
    if npig == 0:
        return None
    order = np.argsort(gt_ignored, kind="mergesort")
    gt_ignored = gt_ignored[order]
    dt = dt[:MAX_DETECTIONS]
    n_t, n_d, n_g = len(IOU_THRESHOLDS), len(dt), len(gt)
    matched = np.zeros((n_t, n_d), dtype=bool)
    det_ignored = np.zeros((n_t, n_d), dtype=bool)
    if n_d:
        gts = np.array([gt[i][1] for i in order], dtype=np.float64).reshape(n_g, 4)
        ious = box_iou(np.array([d[1] for d in dt], dtype=np.float64).reshape(n_d, 4), gts)
        if np.isnan(ious).any():
            matched, det_ignored = _match_scalar(ious, gt_ignored)
        else:
            matched, det_ignored = _match(ious, gt_ignored)
        outside = np.array([d[2] < AREA_MIN or d[2] > AREA_MAX for d in dt], dtype=bool)
        det_ignored |= ~matched & outside[None, :]
    tps = np.cumsum(matched & ~det_ignored, axis=1).astype(np.float64)
    fps = np.cumsum(~matched & ~det_ignored, axis=1).astype(np.float64)
    recall = tps / npig
    precision = tps / (fps + tps + _EPS)
    # Precision envelope: non-increasing from the right.
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    # searchsorted(side="left") on each non-decreasing recall row = count of values below.
    idx = (recall[:, :, None] < RECALL_THRESHOLDS[None, None, :]).sum(axis=1)
    padded = np.concatenate([precision, np.zeros((n_t, 1))], axis=1)
    result: FloatArray = np.take_along_axis(padded, idx, axis=1)
    return result


def coco_ap(gt: Sequence[Box], dt: Sequence[Box]) -> tuple[float, float]:
    """(AP@[.50:.95], AP@.50) of one image, as pycocotools' ``stats[0]`` and ``stats[1]``.

    ``gt`` and ``dt`` are in list order (detections all score 1.0, so list order is
    rank order); every detection's category must be one of the GT categories. A GT
    whose area lies outside [0, 1e10] is ignored; when all are, the result is -1.
    """
    by_cat_gt: dict[Hashable, list[Box]] = {}
    for g in gt:
        by_cat_gt.setdefault(g[0], []).append(g)
    by_cat_dt: dict[Hashable, list[Box]] = {}
    for d in dt:
        by_cat_dt.setdefault(d[0], []).append(d)
    per_cat = [_category_precision(g, by_cat_dt.get(cat, [])) for cat, g in by_cat_gt.items()]
    kept = [p for p in per_cat if p is not None]
    if not kept:
        return -1.0, -1.0
    stacked = np.stack(kept, axis=-1)  # (thresholds, recall points, categories), COCO's layout
    return float(np.mean(stacked)), float(np.mean(stacked[0]))
