"""Our autoscaler against the Kubernetes HPA algorithm on a day of synthetic serving load.

    .venv/bin/python bench/autoscaler.py [--seed 7] [--startup 120] [--bursts 24]

The trace is demand in generated tokens/s, one value per second for 24 hours: a diurnal sine
(night at 25% of the daily peak), ±5% noise, and seeded bursts (1.3-2.5x the load for 1-15
minutes, arriving at random). Both autoscalers drive the same simulated Deployment:

- a replica serves up to CAPACITY tokens/s once ready, STARTUP seconds after it is created;
- demand beyond the ready capacity queues (as requests of TOKENS_PER_REQUEST tokens) and is
  served later when capacity is spare;
- every evaluation period (15 s) the autoscaler sees the tokens/s served over that period,
  the queue depth, and the current and ready replica counts, and sets the replica count.

The HPA is the controller's algorithm for a Pods metric (tokens/s per pod, averaged over the
ready pods): desired = ceil(current * metric/target), nothing within 10% tolerance, pods
without metrics (not ready) counted as 0 when scaling up and as at target when scaling down,
scale-up stabilization 0, scale-down to the highest recommendation of the last 5 minutes,
clamped to min/max. Its default scale-up rate limit (double, or +4 pods, per 15 s) never binds
here (the metric cannot exceed CAPACITY/target = 1.25 * target), so it is left out.

Printed: replica-hours, under-provisioned time (seconds in which demand exceeded the ready
capacity), scale events (changes of the replica count), the peak queue, and the ratios ours/HPA.
The target: less under-provisioned time than the HPA at no more than 1.10x its replica-hours.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vlmr1_operator.autoscaler import Observation, ScalingPolicy, State, decide

DAY_S = 86_400
PERIOD_S = 15
CAPACITY = 1000.0  # tokens/s one replica can serve
TARGET = 800.0  # tokens/s per replica the service asks for (80% of capacity: headroom for bursts)
TOKENS_PER_REQUEST = 300.0  # the simulated mean; the policy keeps its default hint (256) on purpose
PEAK_DEMAND = 16_000.0  # tokens/s at the daily peak: 20 replicas at target
MIN_REPLICAS, MAX_REPLICAS = 2, 60
HPA_TOLERANCE = 0.1
HPA_DOWN_WINDOW_S = 300


def day_trace(seed: int, bursts: int) -> list[float]:
    """Demand in tokens/s for each second of a day: diurnal sine, noise and bursts."""
    rng = random.Random(seed)
    # Peak in mid-afternoon, trough at night (25% of the peak).
    base = [PEAK_DEMAND * (0.625 - 0.375 * math.cos(2 * math.pi * (t - 4 * 3600) / DAY_S)) for t in range(DAY_S)]
    factor = [1.0] * DAY_S
    for _ in range(bursts):
        start = rng.randrange(DAY_S)
        length = rng.randint(60, 900)
        height = rng.uniform(1.3, 2.5)
        for t in range(start, min(DAY_S, start + length)):
            factor[t] = max(factor[t], height)
    # Noise per 5-second block: requests arrive in clumps, not as a smooth rate.
    noise = [rng.uniform(0.95, 1.05) for _ in range(DAY_S // 5 + 1)]
    return [base[t] * factor[t] * noise[t // 5] for t in range(DAY_S)]


@dataclass
class Deployment:
    """Replicas that take STARTUP seconds to become ready, serving a queue of tokens."""

    startup_s: int
    replicas: int
    ready_at: list[int] = field(default_factory=list)  # per replica, sorted: oldest first
    queue: float = 0.0  # tokens waiting

    def __post_init__(self) -> None:
        self.ready_at = [0] * self.replicas

    def ready(self, now: int) -> int:
        return sum(1 for t in self.ready_at if t <= now)

    def scale(self, now: int, replicas: int) -> None:
        if replicas > self.replicas:
            self.ready_at += [now + self.startup_s] * (replicas - self.replicas)
        else:
            # Like a ReplicaSet: remove the youngest (not-ready first) pods.
            self.ready_at = self.ready_at[:replicas]
        self.replicas = replicas

    def serve(self, now: int, demand: float) -> float:
        """One second: serve demand and backlog up to the ready capacity; returns tokens served."""
        capacity = self.ready(now) * CAPACITY
        served = min(self.queue + demand, capacity)
        self.queue = max(0.0, self.queue + demand - served)  # no float residue below zero
        return served


class Hpa:
    """The HPA controller's replica calculation for an averaged Pods metric, with behaviors."""

    def __init__(self, target: float, min_replicas: int, max_replicas: int) -> None:
        self.target = target
        self.min_replicas, self.max_replicas = min_replicas, max_replicas
        self.recommendations: list[tuple[float, int]] = []

    def calc(self, current: int, ready: int, total: float) -> int:
        """calcPlainMetricReplicas: ready pods report total/ready each, the rest are missing."""
        if ready == 0:
            return current  # no metrics: the controller errors and leaves the scale alone
        ratio = (total / ready) / self.target
        missing = current - ready
        if missing <= 0:
            if abs(1.0 - ratio) <= HPA_TOLERANCE:
                return current
            return math.ceil(ratio * ready)
        # Missing pods: 0 when scaling up, the target when scaling down.
        fill = 0.0 if ratio > 1.0 else self.target
        new_ratio = (total + missing * fill) / (current * self.target)
        if abs(1.0 - new_ratio) <= HPA_TOLERANCE or (ratio < 1.0 < new_ratio) or (new_ratio < 1.0 < ratio):
            return current
        replicas = math.ceil(new_ratio * current)
        if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
            return current
        return replicas

    def __call__(self, now: float, current: int, ready: int, total: float) -> int:
        desired = self.calc(current, ready, total)
        # stabilizeRecommendationWithBehaviors: up window 0, down window 300 s (strictly newer).
        self.recommendations = [(t, r) for t, r in self.recommendations if t > now - HPA_DOWN_WINDOW_S]
        self.recommendations.append((now, desired))
        up = desired
        down = max(r for _, r in self.recommendations)
        stabilized = max(current, up)
        stabilized = min(stabilized, down)
        return min(self.max_replicas, max(self.min_replicas, stabilized))


@dataclass
class Result:
    replica_seconds: float = 0.0
    under_s: int = 0
    events: int = 0
    peak_queue_requests: float = 0.0


Scaler = Callable[[int, Deployment, float], int]


def run(trace: list[float], startup_s: int, scaler: Scaler) -> Result:
    """Replay `trace` through a Deployment driven by `scaler(now, deployment, served_tokens_per_s)`."""
    dep = Deployment(startup_s, MIN_REPLICAS)
    result = Result()
    served_in_period = 0.0
    for now, demand in enumerate(trace):
        if demand > dep.ready(now) * CAPACITY:
            result.under_s += 1
        served_in_period += dep.serve(now, demand)
        result.replica_seconds += dep.replicas
        result.peak_queue_requests = max(result.peak_queue_requests, dep.queue / TOKENS_PER_REQUEST)
        if (now + 1) % PERIOD_S == 0:
            desired = scaler(now + 1, dep, served_in_period / PERIOD_S)
            served_in_period = 0.0
            if desired != dep.replicas:
                result.events += 1
                dep.scale(now + 1, desired)
    return result


def ours() -> Scaler:
    policy = ScalingPolicy(
        target_tokens_per_second_per_replica=TARGET,
        min_replicas=MIN_REPLICAS,
        max_replicas=MAX_REPLICAS,
        scale_up_window_s=0,
        scale_down_window_s=300,
        evaluation_period_s=PERIOD_S,
    )
    state = State()

    def scale(now: int, dep: Deployment, served: float) -> int:
        nonlocal state
        obs = Observation(
            time=now,
            replicas=dep.replicas,
            ready_replicas=dep.ready(now),
            tokens_per_second=served,
            waiting_requests=dep.queue / TOKENS_PER_REQUEST,
        )
        desired, state, _ = decide(policy, state, obs)
        return desired

    return scale


def hpa() -> Scaler:
    controller = Hpa(TARGET, MIN_REPLICAS, MAX_REPLICAS)
    return lambda now, dep, served: controller(now, dep.replicas, dep.ready(now), served)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--startup", type=int, default=120, help="seconds from pod creation to ready")
    parser.add_argument("--bursts", type=int, default=24, help="bursts in the day")
    args = parser.parse_args()

    started = time.perf_counter()
    trace = day_trace(args.seed, args.bursts)
    results = {"ours": run(trace, args.startup, ours()), "HPA": run(trace, args.startup, hpa())}
    a, b = results["ours"], results["HPA"]
    ideal = sum(math.ceil(d / TARGET) for d in trace) / 3600

    print(
        f"day trace: seed {args.seed}, {args.bursts} bursts, peak {max(trace):.0f} tok/s, startup {args.startup} s, "
        f"capacity {CAPACITY:g} tok/s/replica, target {TARGET:g}; replica-hours at target if instant: {ideal:.1f}"
    )
    print(f"{'':8}{'replica-hours':>15}{'under-provisioned s':>21}{'scale events':>14}{'peak queue (req)':>18}")
    for name, r in results.items():
        print(f"{name:8}{r.replica_seconds / 3600:>15.1f}{r.under_s:>21d}{r.events:>14d}{r.peak_queue_requests:>18.0f}")
    print(
        f"{'ours/HPA':8}{a.replica_seconds / b.replica_seconds:>15.3f}{a.under_s / max(1, b.under_s):>21.3f}"
        f"{a.events / max(1, b.events):>14.3f}{a.peak_queue_requests / max(1.0, b.peak_queue_requests):>18.3f}"
    )
    met = a.under_s < b.under_s and a.replica_seconds <= 1.10 * b.replica_seconds
    print(f"target (less under-provisioned time, <= 1.10x replica-hours): {'met' if met else 'NOT met'}")
    print(f"({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
