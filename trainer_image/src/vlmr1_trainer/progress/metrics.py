"""Prometheus gauges for the trainer's progress, on a registry of their own.

Every ``ProgressMetrics`` has its own ``CollectorRegistry`` (never prometheus_client's
global one) so tests, and several trainers in one process, never collide on metric
names. Only rank 0 serves them: ``start_metrics_server`` binds ``0.0.0.0`` so the
operator (or a Prometheus scraping the pod) reaches them.
"""

from __future__ import annotations

import math
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from vlmr1_trainer.progress.record import ProgressRecord

__all__ = ["PREFIX", "ProgressMetrics", "start_metrics_server", "stop_metrics_server"]

PREFIX = "vlmr1_trainer"

# ProgressRecord field -> (gauge suffix, help). A None field is exported as NaN: a
# stale value (say the KL of a run that has none) would read as a real measurement.
_GAUGES: dict[str, tuple[str, str]] = {
    "step": ("step", "Optimizer steps completed at the last logging step."),
    "max_steps": ("max_steps", "Optimizer steps the run will take."),
    "epoch": ("epoch", "Fractional epoch at the last logging step."),
    "reward_mean": ("reward_mean", "Mean weighted total reward over the logging window."),
    "reward_std": ("reward_std", "Standard deviation of the weighted total reward."),
    "kl": ("kl", "Mean per-token KL divergence from the reference model (NaN when beta is 0)."),
    "completion_length": ("completion_length", "Mean completion length in tokens."),
    "clip_ratio": ("clip_ratio", "Share of tokens whose importance ratio was clipped."),
    "learning_rate": ("learning_rate", "Learning rate at the last logging step."),
    "loss": ("loss", "Training loss at the last logging step."),
    "grad_norm": ("grad_norm", "Gradient norm at the last logging step."),
    "samples_per_second": ("samples_per_second", "Completions trained on per second."),
    "step_time_seconds": ("step_time_seconds", "Wall-clock seconds per optimizer step."),
    "eta_seconds": ("eta_seconds", "Estimated seconds until max_steps at the current pace."),
    "timestamp": ("last_progress_timestamp_seconds", "Unix time of the last progress record."),
}


# RewardStats field -> help of the per-reward gauge vlmr1_trainer_reward_function_<field>{reward}.
_REWARD_GAUGES: dict[str, str] = {
    "mean": "Mean of one reward function over the logging window.",
    "std": "Standard deviation of one reward function over the logging window.",
    "timeouts": "Completions over the reward's time budget per scored batch (mean over the logging window).",
    "errors": "Completions the reward raised on per scored batch (mean over the logging window).",
    "failures": "Completions a remote reward's failed requests scored 0.0, per scored batch (onFailure: zero).",
}


def _value(value: float | None) -> float:
    return math.nan if value is None else float(value)


class ProgressMetrics:
    """The ``vlmr1_trainer_*`` gauges and checkpoint counter, on ``registry`` (a new one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._gauges = {
            name: Gauge(f"{PREFIX}_{suffix}", doc, registry=self.registry) for name, (suffix, doc) in _GAUGES.items()
        }
        # Per reward function: its own metric names, since a family cannot mix labelled and
        # unlabelled samples with vlmr1_trainer_reward_mean.
        self.reward_function = {
            stat: Gauge(f"{PREFIX}_reward_function_{stat}", doc, ["reward"], registry=self.registry)
            for stat, doc in _REWARD_GAUGES.items()
        }
        self.reward_function_mean = self.reward_function["mean"]
        self.reward_function_std = self.reward_function["std"]
        self.checkpoints = Counter(
            f"{PREFIX}_checkpoints", "Complete checkpoints saved and reported.", registry=self.registry
        )
        self.last_checkpoint_step = Gauge(
            f"{PREFIX}_last_checkpoint_step", "Step of the last reported checkpoint.", registry=self.registry
        )
        # The operator folds these into GRPOJob status.checkpoints: an info-style series per
        # checkpoint (its identity in labels) and its metrics, so one scrape carries everything.
        self.checkpoint_info = Gauge(
            f"{PREFIX}_checkpoint_info",
            "A complete checkpoint (value 1): its step, uri and manifest digest.",
            ["step", "uri", "digest"],
            registry=self.registry,
        )
        self.checkpoint_metric = Gauge(
            f"{PREFIX}_checkpoint_metric",
            "A training metric recorded in a checkpoint's manifest.",
            ["step", "metric"],
            registry=self.registry,
        )

    def update(self, record: ProgressRecord) -> None:
        """Set every gauge from ``record``."""
        for name, gauge in self._gauges.items():
            gauge.set(_value(getattr(record, name)))
        for reward, stats in record.rewards.items():
            for stat, gauge in self.reward_function.items():
                value = getattr(stats, stat)
                if value is not None or stat in ("mean", "std"):  # counts appear once logged
                    gauge.labels(reward=reward).set(_value(value))

    def checkpoint_saved(
        self, step: int, uri: str = "", digest: str = "", metrics: dict[str, float] | None = None
    ) -> None:
        """Count one reported checkpoint and publish its identity and metrics."""
        self.checkpoints.inc()
        self.last_checkpoint_step.set(step)
        if digest:
            self.checkpoint_info.labels(step=str(step), uri=uri, digest=digest).set(1)
        for name, value in (metrics or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                self.checkpoint_metric.labels(step=str(step), metric=name).set(float(value))


def start_metrics_server(
    port: int | None, registry: CollectorRegistry, addr: str = "0.0.0.0"
) -> tuple[WSGIServer, int] | None:
    """Serve ``registry`` over HTTP on ``addr:port`` in a daemon thread: ``(server, actual_port)``.

    Port 0 picks a free port (returned); None or a negative port disables serving (None).
    Stop it with ``stop_metrics_server``.
    """
    if port is None or port < 0:
        return None
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server, int(server.server_port)


def stop_metrics_server(server: WSGIServer) -> None:
    """Stop serving and close the socket."""
    server.shutdown()
    server.server_close()
