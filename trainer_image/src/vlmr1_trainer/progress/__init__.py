"""Training progress for the operator and for people: JSON lines, Prometheus, DEBUG dumps.

Rank 0 of a run reports, per logging step, one ``{"event": "progress", ...}`` line in
``<output_dir>/metrics.jsonl`` (see ``ProgressRecord`` for the fields) and the same values
as ``vlmr1_trainer_*`` gauges on an HTTP port; each complete checkpoint adds an
``{"event": "checkpoint", "uri", "step", "digest", "metrics"}`` line and increments
``vlmr1_trainer_checkpoints_total``. In DEBUG mode (``DEBUG_MODE=true``, as in VLM-R1)
rewards are wrapped so that sampled completions and their scores go to
``<output_dir>/completions.jsonl``.

``ProgressCallback`` imports transformers; it is loaded on first use so that the rest
(records, writer, gauges, dumper) stays import-light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vlmr1_trainer.progress.debug import (
    COMPLETIONS_FILE,
    DEFAULT_MAX_PER_STEP,
    CompletionDumper,
    debug_enabled,
    prompt_text,
    wrap_rewards,
)
from vlmr1_trainer.progress.jsonl import JsonlWriter, json_line, json_safe
from vlmr1_trainer.progress.metrics import PREFIX, ProgressMetrics, start_metrics_server, stop_metrics_server
from vlmr1_trainer.progress.record import (
    ProgressRecord,
    RewardStats,
    estimate_eta,
    is_training_log,
    record_from_logs,
    step_timing,
)

if TYPE_CHECKING:
    from vlmr1_trainer.progress.callback import METRICS_FILE, CheckpointReport, ProgressCallback, ProgressSummary

__all__ = [
    "COMPLETIONS_FILE",
    "DEFAULT_MAX_PER_STEP",
    "METRICS_FILE",
    "PREFIX",
    "CheckpointReport",
    "CompletionDumper",
    "JsonlWriter",
    "ProgressCallback",
    "ProgressMetrics",
    "ProgressRecord",
    "ProgressSummary",
    "RewardStats",
    "debug_enabled",
    "estimate_eta",
    "is_training_log",
    "json_line",
    "json_safe",
    "prompt_text",
    "record_from_logs",
    "start_metrics_server",
    "step_timing",
    "stop_metrics_server",
    "wrap_rewards",
]

_LAZY = {"METRICS_FILE", "CheckpointReport", "ProgressCallback", "ProgressSummary"}


def __getattr__(name: str) -> Any:
    # transformers takes seconds to import; only the callback needs it.
    if name in _LAZY:
        from vlmr1_trainer.progress import callback

        return getattr(callback, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
