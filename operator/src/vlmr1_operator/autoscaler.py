"""The VLMService autoscaler: measured load in, desired replicas out. Pure: no clock, no I/O.

Once per evaluation period (a VLMService is due then in resync.py) its controller measures
throughput and queue depth, and the planner (service_lifecycle.py) builds an `Observation`,
calls `decide` with the `State` the previous call returned and has the desired count written
through the scale subresource. Everything that needs judgement is here, so it can be tested
on load traces and compared with the Kubernetes HPA (bench/autoscaler.py).

Algorithm, once per evaluation period:

1. Demand. Served tokens/s cannot exceed what the ready replicas can serve, so when they are
   saturated throughput understates demand; the engines' waiting queue is the saturation
   signal. Requests are conserved: arrivals = served + growth of the queue. So, whenever the
   queue is above its normal level (`waiting_per_replica` per ready replica) now or at the
   previous observation,

       demand = tokens/s + (d(waiting)/dt) * tokens_per_request

   and the backlog beyond the normal level is to be drained over `backlog_drain_s`:

       needed = (demand + excess_waiting * tokens_per_request / backlog_drain_s) / target

   With a normal queue, needed = tokens/s / target: steady-state sizing is throughput alone,
   so gauge noise in the queue cannot move it. `tokens_per_request` only sizes the backlog;
   when it is wrong the reaction is still in the right direction, just stepwise.
2. Recommendation. Within the tolerance band (|needed / replicas - 1| <= tolerance) keep the
   current count, so measurement jitter causes no changes. Above it, ceil(needed): replicas
   still starting count as serving nothing, since the demand was measured without them.
   Below it, replicas still starting are assumed to carry the target (as the HPA assumes for
   pods without metrics), which keeps start-up from looking like spare capacity while letting
   pods that never become ready (unschedulable) be scaled away. Clamp to [min, max].
3. Stabilization (the HPA's rule, on the recommendation history in `State`). Scale up to the
   lowest recommendation of the scale-up window, so with a window of 0 (the default) scale-up
   acts on the first observation that shows the load, and with a window of w only on load that
   lasted w. Scale down only to the highest recommendation of the scale-down window, so one
   dip does not shrink capacity and a burst that ends is held for the window: a scale-down
   comes at least a window after the last recommendation that needed the capacity, so the
   count cannot go up and down again within a window, which is what keeps it from flapping.
   Optionally, scale down by at most `max_scale_down_step` replicas per decision. A fresh
   `State` (the operator restarted) takes the unknown past to have recommended the current
   count, so a restart changes nothing until the windows have been observed.

No metrics (no ready replica) means no measurement: keep the count (at least one replica if
requests are waiting and the service is scaled to zero).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from vlmr1_core.api.vlmservice import AutoscalingSpec, ReplicaRange

#: A previous observation older than this many evaluation periods is not used for the queue's
#: growth rate (a missed scrape or an operator restart would otherwise average over a gap).
STALE_PERIODS = 4


def _finite_non_negative(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be finite and non-negative, got {value!r}")


@dataclass(frozen=True)
class Observation:
    """Load measured over one evaluation period."""

    time: float
    """When it was measured, in seconds on any monotonic clock."""

    replicas: int
    """Current replicas (the scale subresource's spec.replicas), ready or starting."""

    tokens_per_second: float
    """Generated tokens per second, summed over the ready replicas."""

    waiting_requests: float = 0.0
    """Requests queued in the engines (not yet running), summed over the ready replicas."""

    ready_replicas: int | None = None
    """Replicas serving and reporting metrics. Unset: all of `replicas`."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.time):
            raise ValueError(f"time must be finite, got {self.time!r}")
        _finite_non_negative("tokens_per_second", self.tokens_per_second)
        _finite_non_negative("waiting_requests", self.waiting_requests)
        if self.replicas < 0 or (self.ready_replicas is not None and self.ready_replicas < 0):
            raise ValueError("replica counts must be non-negative")

    @property
    def ready(self) -> int:
        """Ready replicas (all of them when `ready_replicas` is unset)."""
        return self.replicas if self.ready_replicas is None else self.ready_replicas


@dataclass(frozen=True)
class ScalingPolicy:
    """How to scale: the target, the bounds, the windows and the queue model."""

    target_tokens_per_second_per_replica: float
    """Generated tokens per second one replica should carry."""

    min_replicas: int
    """Fewest replicas."""

    max_replicas: int
    """Most replicas."""

    scale_up_window_s: float = 0.0
    """Scale up to the lowest recommendation of this window (0: on the first observation)."""

    scale_down_window_s: float = 300.0
    """Scale down only to the highest recommendation of this window."""

    evaluation_period_s: float = 15.0
    """How often observations come; a previous one older than STALE_PERIODS of these is ignored."""

    tolerance: float = 0.1
    """Keep the count while needed/current is within 1 ± tolerance."""

    waiting_per_replica: float = 4.0
    """Queued requests per ready replica that count as normal (the engine admitting a batch);
    a longer queue means the replicas are saturated."""

    tokens_per_request: float = 256.0
    """Typical generated tokens per request; converts queued requests into tokens to serve."""

    backlog_drain_s: float = 300.0
    """Size extra capacity to drain the abnormal backlog within this time. Defaults to the
    scale-down window: extra replicas stay that long anyway."""

    max_scale_down_step: int | None = None
    """Remove at most this many replicas per decision (None: no limit)."""

    def __post_init__(self) -> None:
        if not (
            math.isfinite(self.target_tokens_per_second_per_replica) and self.target_tokens_per_second_per_replica > 0
        ):
            raise ValueError("target_tokens_per_second_per_replica must be positive")
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise ValueError(
                f"need 0 <= min_replicas <= max_replicas and max >= 1, got {self.min_replicas}, {self.max_replicas}"
            )
        for name in ("scale_up_window_s", "scale_down_window_s", "tolerance", "waiting_per_replica"):
            _finite_non_negative(name, getattr(self, name))
        for name in ("evaluation_period_s", "tokens_per_request", "backlog_drain_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive, got {value!r}")
        if self.max_scale_down_step is not None and self.max_scale_down_step < 1:
            raise ValueError("max_scale_down_step must be at least 1")

    @classmethod
    def from_spec(cls, spec: AutoscalingSpec, replicas: ReplicaRange) -> ScalingPolicy:
        """The policy a VLMService asks for; the queue model keeps its defaults."""
        return cls(
            target_tokens_per_second_per_replica=spec.target_tokens_per_second_per_replica,
            min_replicas=replicas.min,
            max_replicas=replicas.max,
            scale_up_window_s=spec.scale_up_stabilization_seconds,
            scale_down_window_s=spec.scale_down_stabilization_seconds,
            evaluation_period_s=spec.evaluation_period_seconds,
        )

    @property
    def history_s(self) -> float:
        """How far back recommendations matter."""
        return max(self.scale_up_window_s, self.scale_down_window_s)

    def clamp(self, replicas: int) -> int:
        """`replicas` within [min_replicas, max_replicas]."""
        return min(self.max_replicas, max(self.min_replicas, replicas))


@dataclass(frozen=True)
class State:
    """What `decide` remembers between calls; a fresh `State()` knows nothing."""

    recommendations: tuple[tuple[float, int], ...] = ()
    """(time, recommended replicas) within the longer stabilization window, oldest first."""

    last_time: float | None = None
    """Time of the previous observation (for the queue's growth rate)."""

    last_waiting: float = 0.0
    """Waiting requests at the previous observation."""

    start: tuple[float, int] | None = None
    """(time, replicas) of the first observation, while it is within a window. What was
    recommended before it is unknown (the operator restarted); it is taken to be that count, so
    a restart neither scales down before a full scale-down window of observations, nor up
    before a full scale-up window."""


class Decision(NamedTuple):
    """What `decide` returns: unpack as `replicas, state, reason = decide(...)`."""

    replicas: int
    """Desired replicas."""

    state: State
    """Pass to the next call."""

    reason: str
    """One line for events and logs: the measurement, what it needs, and why this count."""


def needed_replicas(policy: ScalingPolicy, observation: Observation, state: State) -> tuple[float, str]:
    """Replicas the measured demand needs at the target (fractional), and how it was estimated."""
    ready = observation.ready
    target = policy.target_tokens_per_second_per_replica
    normal = ready * policy.waiting_per_replica
    demand = observation.tokens_per_second
    how = f"{demand:.0f} tok/s on {ready} ready"
    dt = None if state.last_time is None else observation.time - state.last_time
    saturated_now = observation.waiting_requests > normal
    # The growth term only when the queue is (or was) abnormal: a normal queue is a noisy gauge
    # and steady-state sizing should rest on throughput alone.
    if (
        dt is not None
        and 0 < dt <= STALE_PERIODS * policy.evaluation_period_s
        and (saturated_now or state.last_waiting > normal)
    ):
        growth = (observation.waiting_requests - state.last_waiting) / dt * policy.tokens_per_request
        demand = max(0.0, demand + growth)
        how += f", queue {'+' if growth >= 0 else '-'}{abs(growth):.0f} tok/s"
    needed = demand / target
    if saturated_now:
        excess = observation.waiting_requests - normal
        backlog = excess * policy.tokens_per_request / policy.backlog_drain_s / target
        needed += backlog
        how += f", backlog {observation.waiting_requests:.0f} waiting (+{backlog:.1f})"
    return needed, how


def recommend(policy: ScalingPolicy, observation: Observation, state: State) -> tuple[int, str]:
    """The replica count this observation alone calls for (before stabilization), and why."""
    current = observation.replicas
    ready = observation.ready
    if ready == 0:
        if current == 0 and observation.waiting_requests > 0:
            return policy.clamp(1), "requests waiting with no replicas"
        return policy.clamp(current), "no ready replica to measure"
    needed, how = needed_replicas(policy, observation, state)
    how += f" needs {needed:.2f} at {policy.target_tokens_per_second_per_replica:g}/replica"
    if current > 0 and abs(needed / current - 1.0) <= policy.tolerance:
        return policy.clamp(current), how + " (within tolerance)"
    if needed > current:
        # Starting replicas count as serving nothing: the demand was measured without them.
        return policy.clamp(math.ceil(needed)), how
    # Starting replicas count as carrying the target (their load is unknown, not absent).
    starting = max(0, current - ready)
    return policy.clamp(min(current, math.ceil(needed + starting))), how


def decide(policy: ScalingPolicy, state: State, observation: Observation) -> Decision:
    """Desired replicas for `observation`, the state for the next call, and the reason."""
    recommendation, how = recommend(policy, observation, state)
    now = observation.time
    cutoff = now - policy.history_s
    history = (*(r for r in state.recommendations if cutoff <= r[0] <= now), (now, recommendation))
    current = policy.clamp(observation.replicas)
    start = (now, current) if state.last_time is None else state.start
    # Windows are inclusive: a recommendation exactly one window old still counts, so a
    # scale-down comes a full window after the last observation that needed the capacity.
    up = min(r for t, r in history if t >= now - policy.scale_up_window_s)
    down = max(r for t, r in history if t >= now - policy.scale_down_window_s)
    # The unknown past before the first observation: strictly inside a window only, so a
    # window of 0 ignores it and a window of w lets the count move w after the first observation.
    if start is not None:
        if start[0] > now - policy.scale_up_window_s:
            up = min(up, start[1])
        if start[0] > now - policy.scale_down_window_s:
            down = max(down, start[1])
        if start[0] <= now - policy.history_s:
            start = None
    desired = current
    why = "steady"
    if current < up:
        desired, why = up, "scale up"
    elif current > down:
        desired, why = down, f"scale down to the highest recommendation of {policy.scale_down_window_s:g}s"
        if policy.max_scale_down_step is not None and current - desired > policy.max_scale_down_step:
            desired = current - policy.max_scale_down_step
            why += f", at most {policy.max_scale_down_step} at a time"
    elif recommendation > current:
        why = f"held: scale-up needs {policy.scale_up_window_s:g}s of higher recommendations"
    elif recommendation < current:
        why = f"held: scale-down waits {policy.scale_down_window_s:g}s"
    if current != observation.replicas:
        why += f" (clamped from {observation.replicas} to [{policy.min_replicas}, {policy.max_replicas}])"
    new_state = State(history, last_time=now, last_waiting=observation.waiting_requests, start=start)
    return Decision(desired, new_state, f"{how} -> {recommendation}; {why}: {observation.replicas} -> {desired}")
