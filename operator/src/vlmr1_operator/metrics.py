"""The operator's own Prometheus metrics: reconciles, errors, latency, jobs by phase."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "vlmr1_operator"


class OperatorMetrics:
    """Metrics on a registry of their own (served by `vlmr1 operator --metrics-port`)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.reconciles = Counter(
            f"{PREFIX}_reconciles", "Reconciles by kind and result (ok, invalid, error).", ["kind", "result"],
            registry=self.registry,
        )  # fmt: skip
        self.errors = Counter(
            f"{PREFIX}_reconcile_errors", "Reconciles that failed (API errors, retried).", ["kind"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            f"{PREFIX}_reconcile_duration_seconds", "Time one reconcile took.", ["kind"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=self.registry,
        )  # fmt: skip
        self.api_calls = Counter(
            f"{PREFIX}_api_calls", "Calls to the API server by verb and resource.", ["verb", "resource"],
            registry=self.registry,
        )  # fmt: skip
        self.jobs = Gauge(f"{PREFIX}_grpojobs", "GRPOJobs by phase.", ["phase"], registry=self.registry)
        self._phases: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def reconciled(self, kind: str, result: str, seconds: float) -> None:
        self.reconciles.labels(kind=kind, result=result).inc()
        if result == "error":
            self.errors.labels(kind=kind).inc()
        self.latency.labels(kind=kind).observe(seconds)

    def api_call(self, verb: str, resource: str) -> None:
        self.api_calls.labels(verb=verb, resource=resource).inc()

    def observe_phase(self, namespace: str, name: str, phase: str) -> None:
        with self._lock:
            self._phases[(namespace, name)] = phase
            self._publish()

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._phases.pop((namespace, name), None)
            self._publish()

    def tracked(self) -> set[tuple[str, str]]:
        """(namespace, name) of every job counted in the phase gauge."""
        with self._lock:
            return set(self._phases)

    def _publish(self) -> None:
        counts: dict[str, int] = {}
        for phase in self._phases.values():
            counts[phase] = counts.get(phase, 0) + 1
        for phase in ("Pending", "Running", "Restarting", "Suspended", "Succeeded", "Failed"):
            self.jobs.labels(phase=phase).set(counts.get(phase, 0))
