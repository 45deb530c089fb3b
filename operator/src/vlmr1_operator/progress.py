"""Trainer progress into GRPOJob status.

The channel: the trainer's rank 0 serves Prometheus text on its metrics port
(vlmr1_trainer_* gauges, and one vlmr1_trainer_checkpoint_info series per complete
checkpoint with its step, uri and digest in labels). The operator reads it from the
master pod's IP on each reconcile of a running job. Why this channel: the trainer
needs no Kubernetes credentials or RBAC, the same endpoint serves a cluster's
Prometheus, and a scrape is idempotent (a missed poll loses nothing, the next carries
the full state).
"""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from vlmr1_core.checkpoints import best_index

PREFIX = "vlmr1_trainer_"

#: Gauge suffix -> TrainingProgress field (camelCase, as in the status).
_PROGRESS = {
    "step": "step",
    "max_steps": "maxSteps",
    "epoch": "epoch",
    "reward_mean": "rewardMean",
    "reward_std": "rewardStd",
    "kl": "kl",
    "loss": "loss",
    "samples_per_second": "samplesPerSecond",
    "eta_seconds": "etaSeconds",
}
_INTEGERS = {"step", "maxSteps", "etaSeconds"}


@dataclass
class TrainerReport:
    """What one scrape of a trainer says."""

    progress: dict[str, Any] = field(default_factory=dict)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)


def parse_metrics(text: str) -> TrainerReport:
    """The progress gauges and checkpoints in a trainer's Prometheus exposition."""
    report = TrainerReport()
    metrics: dict[str, dict[str, float]] = {}
    infos: list[dict[str, str]] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name.removeprefix(PREFIX)
            if not sample.name.startswith(PREFIX):
                continue
            if name == "checkpoint_info" and sample.value == 1:
                infos.append(dict(sample.labels))
            elif name == "checkpoint_metric" and math.isfinite(sample.value):
                metrics.setdefault(sample.labels["step"], {})[sample.labels["metric"]] = sample.value
            elif name in _PROGRESS and math.isfinite(sample.value):
                key = _PROGRESS[name]
                report.progress[key] = int(sample.value) if key in _INTEGERS else sample.value
    for info in sorted(infos, key=lambda i: int(i["step"])):
        report.checkpoints.append(
            {
                "uri": info["uri"],
                "step": int(info["step"]),
                "digest": info["digest"],
                "metrics": metrics.get(info["step"], {}),
            }
        )
    return report


def scrape(ip: str, port: int, timeout: float = 3.0) -> TrainerReport | None:
    """Read a trainer's metrics; None when it does not answer (not started yet, or gone)."""
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}/metrics", timeout=timeout) as response:
            return parse_metrics(response.read().decode("utf-8", "replace"))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def fold(
    status: dict[str, Any],
    report: TrainerReport,
    now: datetime,
    best_metric: str = "reward",
    *,
    greater_is_better: bool = True,
) -> dict[str, Any]:
    """A status with the report's progress and checkpoints merged in (checkpoints by step;
    the best by the job's checkpoint.bestMetric, ties to the newer, is marked and copied to
    bestCheckpoint)."""
    out = dict(status)
    old = {k: v for k, v in (status.get("progress") or {}).items() if k != "updatedAt"}
    if report.progress and report.progress != old:
        # Stamped only when the trainer moved on: an unchanged trainer must not cost a status write.
        out["progress"] = {**report.progress, "updatedAt": now.isoformat().replace("+00:00", "Z")}
    by_step = {c["step"]: dict(c) for c in status.get("checkpoints", [])}
    for checkpoint in report.checkpoints:
        by_step[checkpoint["step"]] = {**by_step.get(checkpoint["step"], {}), **checkpoint}
    checkpoints = [by_step[s] for s in sorted(by_step)]
    index = best_index(
        [(c["step"], c.get("metrics") or {}) for c in checkpoints], best_metric, greater_is_better=greater_is_better
    )
    best = checkpoints[index] if index is not None else None
    for c in checkpoints:
        c["best"] = c is best
    if checkpoints:
        out["checkpoints"] = checkpoints
    if best is not None:
        out["bestCheckpoint"] = dict(best)
    return out
