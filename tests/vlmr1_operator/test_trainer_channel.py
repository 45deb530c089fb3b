"""The trainer -> operator progress channel: what rank 0 exports is what the operator folds into status."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import generate_latest

from vlmr1_core.api.grpojob import GRPOJobStatus
from vlmr1_operator.progress import TrainerReport, fold, parse_metrics
from vlmr1_trainer.progress.metrics import ProgressMetrics
from vlmr1_trainer.progress.record import record_from_logs

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def exported() -> str:
    metrics = ProgressMetrics()
    logs = {"reward": 0.75, "reward_std": 0.1, "kl": 0.02, "loss": 0.01, "rewards/rec_iou/mean": 0.5, "epoch": 0.5}
    metrics.update(
        record_from_logs(logs, step=40, max_steps=100, timestamp=1.0, samples_per_second=12.5, eta_seconds=300.0)
    )
    metrics.checkpoint_saved(20, "pvc://c/run/checkpoint-20", DIGEST_A, {"reward": 0.8, "loss": 0.1})
    metrics.checkpoint_saved(40, "pvc://c/run/checkpoint-40", DIGEST_B, {"reward": 0.7})
    return generate_latest(metrics.registry).decode()


def test_the_operator_reads_what_the_trainer_exports() -> None:
    report = parse_metrics(exported())
    assert report.progress == {
        "step": 40, "maxSteps": 100, "epoch": 0.5, "rewardMean": 0.75, "rewardStd": 0.1, "kl": 0.02,
        "loss": 0.01, "samplesPerSecond": 12.5, "etaSeconds": 300,
    }  # fmt: skip
    assert report.checkpoints == [
        {"uri": "pvc://c/run/checkpoint-20", "step": 20, "digest": DIGEST_A, "metrics": {"reward": 0.8, "loss": 0.1}},
        {"uri": "pvc://c/run/checkpoint-40", "step": 40, "digest": DIGEST_B, "metrics": {"reward": 0.7}},
    ]


def test_fold_marks_the_best_checkpoint_and_validates_as_status() -> None:
    status = fold({"phase": "Running"}, parse_metrics(exported()), NOW)
    assert [c["best"] for c in status["checkpoints"]] == [True, False]
    assert status["bestCheckpoint"]["step"] == 20
    assert status["progress"]["updatedAt"] == "2026-11-25T12:00:00Z"
    parsed = GRPOJobStatus.model_validate(status)  # the CRD's status schema accepts it
    assert parsed.progress is not None and (parsed.progress.step, parsed.progress.loss) == (40, 0.01)


def test_fold_keeps_checkpoints_the_trainer_no_longer_reports() -> None:
    """A restarted trainer exports only its new checkpoints; status keeps the earlier ones."""
    first = fold({}, parse_metrics(exported()), NOW)
    later = TrainerReport(
        progress={"step": 60},
        checkpoints=[{"uri": "u60", "step": 60, "digest": "sha256:" + "c" * 64, "metrics": {"reward": 0.9}}],
    )
    status = fold(first, later, NOW)
    assert [c["step"] for c in status["checkpoints"]] == [20, 40, 60]
    assert status["bestCheckpoint"]["step"] == 60
    assert [c["best"] for c in status["checkpoints"]] == [False, False, True]


def test_fold_of_an_empty_report_changes_nothing() -> None:
    status = {"phase": "Running", "restarts": 1}
    assert fold(status, TrainerReport(), NOW) == status


def test_garbage_is_not_progress() -> None:
    assert parse_metrics("# nothing here\nother_metric 1\n") == TrainerReport()


def test_an_unchanged_trainer_leaves_status_unchanged() -> None:
    report = parse_metrics(exported())
    first = fold({"phase": "Running"}, report, NOW)
    later = fold(first, report, NOW.replace(minute=5))
    assert later == first, "re-reading the same progress must not change status (no write)"


def test_best_follows_the_declared_metric_through_the_channel() -> None:
    """An evaluation metric with slashes in its name survives the Prometheus labels, and the
    best checkpoint follows checkpoint.bestMetric (here a lower-is-better one, too)."""
    metrics = ProgressMetrics()
    metrics.checkpoint_saved(20, "u20", DIGEST_A, {"reward": 0.9, "eval/refcoco-val/rec_acc": 0.4, "loss": 0.3})
    metrics.checkpoint_saved(40, "u40", DIGEST_B, {"reward": 0.5, "eval/refcoco-val/rec_acc": 0.6, "loss": 0.2})
    report = parse_metrics(generate_latest(metrics.registry).decode())
    assert report.checkpoints[0]["metrics"]["eval/refcoco-val/rec_acc"] == 0.4
    assert fold({}, report, NOW)["bestCheckpoint"]["step"] == 20  # by reward, the default
    assert fold({}, report, NOW, "eval/refcoco-val/rec_acc")["bestCheckpoint"]["step"] == 40
    assert fold({}, report, NOW, "loss", greater_is_better=False)["bestCheckpoint"]["step"] == 40
    assert "bestCheckpoint" not in fold({}, report, NOW, "eval/other/rec_acc")
