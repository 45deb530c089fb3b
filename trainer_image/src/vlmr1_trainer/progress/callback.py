"""``ProgressCallback``: rank 0's progress lines, Prometheus gauges and checkpoint reports.

Attached to TRL's ``GRPOTrainer`` (``callbacks=[...]``), it turns each training log into a
``ProgressRecord``, appends it as ``{"event": "progress", ...}`` to
``<output_dir>/metrics.jsonl`` (the operator and people tail that file), optionally echoes
the line to a stream and updates the gauges. The trainer's checkpoint code calls
``report_checkpoint`` after each complete checkpoint, which appends
``{"event": "checkpoint", ...}``; the starting model's evaluation (evaluation.onStart) is an
``{"event": "evaluation", "step": 0, ...}`` line. Only the world's process zero writes or serves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from vlmr1_core.checkpoints import CheckpointInfo
from vlmr1_trainer.progress.jsonl import JsonlWriter, json_line
from vlmr1_trainer.progress.metrics import ProgressMetrics, start_metrics_server, stop_metrics_server
from vlmr1_trainer.progress.record import (
    ProgressRecord,
    estimate_eta,
    is_training_log,
    record_from_logs,
    step_timing,
)

__all__ = ["METRICS_FILE", "CheckpointReport", "ProgressCallback", "ProgressSummary"]

METRICS_FILE = "metrics.jsonl"


@dataclass(frozen=True)
class CheckpointReport:
    """A checkpoint as reported: where it is, its step and digest."""

    uri: str
    step: int
    digest: str


@dataclass
class ProgressSummary:
    """What the local run's closing summary needs."""

    step: int | None = None
    """Last logged step."""
    max_steps: int | None = None
    records: int = 0
    """Progress lines written."""
    first_reward_mean: float | None = None
    last_reward_mean: float | None = None
    checkpoints: list[CheckpointReport] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable lines, e.g. for the end of ``vlmr1 train``."""

        def fmt(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.4f}"

        steps = f"{self.step if self.step is not None else 0}"
        if self.max_steps:
            steps += f"/{self.max_steps}"
        out = [
            f"steps: {steps} ({self.records} progress records)",
            f"reward mean: {fmt(self.first_reward_mean)} (first) -> {fmt(self.last_reward_mean)} (last)",
            f"checkpoints: {len(self.checkpoints)}",
        ]
        out += [f"  step {c.step}: {c.uri} ({c.digest})" for c in self.checkpoints]
        return out


class ProgressCallback(TrainerCallback):
    """Progress reporting for rank 0 (see the module docstring).

    Args:
        output_dir: where ``metrics.jsonl`` goes (usually the run's output folder).
        echo: also write each JSON line here (e.g. ``sys.stdout`` for the pod's log).
        registry: the Prometheus registry for the gauges (a new private one by default).
        metrics_port: serve the registry on this port from ``on_train_begin`` until
            ``close``; 0 picks a free port, None disables serving.
        samples_per_step: completions per optimizer step; by default
            ``per_device_train_batch_size * gradient_accumulation_steps * world_size``
            from the training arguments (TRL counts completions in that batch size).
        clock: monotonic seconds, for step times (injectable for tests).
        wall_clock: seconds since the epoch, for timestamps (injectable for tests).
    """

    def __init__(
        self,
        output_dir: Path,
        *,
        echo: TextIO | None = None,
        registry: CollectorRegistry | None = None,
        metrics_port: int | None = None,
        samples_per_step: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.writer = JsonlWriter(self.output_dir / METRICS_FILE)
        self.echo = echo
        self.metrics = ProgressMetrics(registry)
        self.metrics_port = metrics_port
        self.samples_per_step = samples_per_step
        self.clock = clock
        self.wall_clock = wall_clock
        self.server_port: int | None = None
        """The port actually served, once serving."""
        self._server: WSGIServer | None = None
        self._last_time: float | None = None
        self._last_step: int | None = None
        self._restart_at_first_step = False
        self._summary = ProgressSummary()

    # -- Trainer events ----------------------------------------------------------------------

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Start the clock (from the resumed step, if any) and, on rank 0, the metrics server."""
        self._last_time, self._last_step = self.clock(), state.global_step
        self._restart_at_first_step = True
        if self.samples_per_step is None:
            self.samples_per_step = (
                args.per_device_train_batch_size * args.gradient_accumulation_steps * max(args.world_size, 1)
            )
        if state.is_world_process_zero and self._server is None:
            started = start_metrics_server(self.metrics_port, self.metrics.registry)
            if started is not None:
                self._server, self.server_port = started

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Restart the clock when the first step begins: setup (model wrapping, skipping the
        already-seen batches on resume) is not a step and would skew the first step time and ETA."""
        if self._restart_at_first_step:
            self._restart_at_first_step = False
            self._last_time, self._last_step = self.clock(), state.global_step

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Report a training log as a progress record (rank 0 only; eval and summary logs are skipped)."""
        if not state.is_world_process_zero or not logs or not is_training_log(logs):
            return
        now, step = self.clock(), state.global_step
        step_time, rate = step_timing(self._last_time, self._last_step, now, step, self.samples_per_step)
        self._last_time, self._last_step = now, step
        record = record_from_logs(
            logs,
            step=step,
            max_steps=state.max_steps,
            timestamp=self.wall_clock(),
            epoch=state.epoch,
            samples_per_second=rate,
            step_time_seconds=step_time,
            eta_seconds=estimate_eta(step, state.max_steps, step_time),
        )
        self.report(record)

    # -- reporting ---------------------------------------------------------------------------

    def report(self, record: ProgressRecord) -> None:
        """Write, echo and export one progress record (the caller is rank 0)."""
        self._write({"event": "progress", **record.to_dict()})
        self.metrics.update(record)
        summary = self._summary
        summary.step, summary.max_steps, summary.records = record.step, record.max_steps, summary.records + 1
        if record.reward_mean is not None:
            if summary.first_reward_mean is None:
                summary.first_reward_mean = record.reward_mean
            summary.last_reward_mean = record.reward_mean

    def report_checkpoint(self, info: CheckpointInfo) -> None:
        """Report a complete checkpoint: a ``checkpoint`` line and the checkpoint counter.

        Call it on the process that wrote the checkpoint (rank 0), after it is complete.
        """
        self._write(
            {
                "event": "checkpoint",
                "uri": info.uri,
                "step": info.step,
                "digest": info.digest,
                "metrics": dict(info.metrics),
                "timestamp": self.wall_clock(),
            }
        )
        self.metrics.checkpoint_saved(info.step, info.uri, info.digest, dict(info.metrics))
        self._summary.checkpoints.append(CheckpointReport(uri=info.uri, step=info.step, digest=info.digest))

    def report_start_evaluation(self, uri: str, metrics: Mapping[str, float]) -> None:
        """Report the starting model's evaluation: an ``evaluation`` line at step 0."""
        self._write(
            {"event": "evaluation", "step": 0, "uri": uri, "metrics": dict(metrics), "timestamp": self.wall_clock()}
        )

    def summary(self) -> ProgressSummary:
        """A copy of the run's summary so far."""
        s = self._summary
        return ProgressSummary(
            step=s.step,
            max_steps=s.max_steps,
            records=s.records,
            first_reward_mean=s.first_reward_mean,
            last_reward_mean=s.last_reward_mean,
            checkpoints=list(s.checkpoints),
        )

    def close(self) -> None:
        """Stop the metrics server, if this callback started one."""
        if self._server is not None:
            stop_metrics_server(self._server)
            self._server, self.server_port = None, None

    def _write(self, line: Mapping[str, Any]) -> None:
        self.writer.write(line)
        if self.echo is not None:
            try:
                self.echo.write(json_line(line))
                self.echo.flush()
            except (OSError, ValueError):  # a closed or broken stream must not end training
                pass
