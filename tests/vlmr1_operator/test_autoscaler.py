"""The autoscaler on load traces (a small serving simulator) and its properties.

The simulator: demand in tokens/s each second; a ready replica serves up to CAPACITY tokens/s;
unmet demand queues (as requests of TOKENS_PER_REQUEST tokens) and is served when capacity is
spare; a new replica is ready STARTUP_S after it is created. Every PERIOD_S the autoscaler sees
the tokens/s served over the period, the queue, and the replica counts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmr1_core.api.vlmservice import AutoscalingSpec, ReplicaRange
from vlmr1_operator.autoscaler import Observation, ScalingPolicy, State, decide

CAPACITY = 1000.0
TARGET = 800.0
PERIOD_S = 15
STARTUP_S = 60
TOKENS_PER_REQUEST = 256.0
WINDOW_S = 300

POLICY = ScalingPolicy(
    target_tokens_per_second_per_replica=TARGET,
    min_replicas=1,
    max_replicas=50,
    scale_up_window_s=0,
    scale_down_window_s=WINDOW_S,
    evaluation_period_s=PERIOD_S,
)


@dataclass
class Run:
    """What happened: every decision, and demand and ready capacity every second."""

    decisions: list[tuple[int, int, int, str]] = field(default_factory=list)  # (time, before, after, reason)
    demand: list[float] = field(default_factory=list)
    capacity: list[float] = field(default_factory=list)

    @property
    def changes(self) -> list[tuple[int, int, int]]:
        return [(t, before, after) for t, before, after, _ in self.decisions if before != after]

    @property
    def final(self) -> int:
        return self.decisions[-1][2]

    def under_provisioned_s(self, since: int = 0) -> int:
        return sum(1 for d, c in zip(self.demand[since:], self.capacity[since:], strict=True) if d > c)


def simulate(
    demand: Callable[[int], float],
    seconds: int,
    replicas: int,
    policy: ScalingPolicy = POLICY,
    tokens_per_request: float = TOKENS_PER_REQUEST,
) -> Run:
    """Drive the autoscaler through `seconds` of `demand`, starting with `replicas` ready."""
    ready_at = [0] * replicas
    queue = 0.0  # tokens
    served = 0.0
    state = State()
    run = Run()
    for now in range(seconds):
        d = demand(now)
        capacity = sum(1 for t in ready_at if t <= now) * CAPACITY
        run.demand.append(d)
        run.capacity.append(capacity)
        out = min(queue + d, capacity)
        queue = max(0.0, queue + d - out)
        served += out
        if (now + 1) % PERIOD_S == 0:
            t = now + 1
            obs = Observation(
                time=t,
                replicas=len(ready_at),
                ready_replicas=sum(1 for r in ready_at if r <= t),
                tokens_per_second=served / PERIOD_S,
                waiting_requests=queue / tokens_per_request,
            )
            desired, state, reason = decide(policy, state, obs)
            run.decisions.append((t, len(ready_at), desired, reason))
            if desired > len(ready_at):
                ready_at += [t + STARTUP_S] * (desired - len(ready_at))
            ready_at = ready_at[:desired]  # the youngest go first
            served = 0.0
    return run


def step(at: int, before: float, after: float) -> Callable[[int], float]:
    return lambda t: before if t < at else after


# --- load traces ---------------------------------------------------------------------------


def test_step_up_reacts_within_one_period_and_covers_the_demand_after_one_start_up() -> None:
    run = simulate(step(600, 4000, 12000), 1800, replicas=5)
    first_up = next(t for t, before, after in run.changes if after > before)
    assert 600 < first_up <= 600 + PERIOD_S
    # The first decision already asks for enough: the replicas are saturated, so throughput alone
    # would say 5 x 1000/800 = 7, but the queue's growth shows the real demand (12000 / 800 = 15).
    assert next(after for t, _, after in run.changes if t == first_up) >= 15
    # Under-provisioned only while the new replicas start; never after.
    assert run.under_provisioned_s(since=600) <= PERIOD_S + STARTUP_S
    assert run.under_provisioned_s(since=600 + PERIOD_S + STARTUP_S) == 0
    # No runaway while the replicas start and the backlog drains: within 25% of the need.
    assert max(after for _, _, after in run.changes) <= math.ceil(1.25 * 12000 / TARGET)
    assert len(run.changes) <= 2


def test_step_down_waits_for_the_window_then_scales_down_once() -> None:
    run = simulate(step(1200, 12000, 4000), 2400, replicas=15)
    assert all(after == 15 for t, _, after, _ in run.decisions if t < 1200)
    downs = [(t, after) for t, before, after in run.changes if after < before]
    # The observation at t=1200 still saw the high load; the window is measured from it.
    assert downs[0][0] >= 1200 + WINDOW_S
    assert downs[0][0] <= 1200 + WINDOW_S + PERIOD_S
    assert downs == [(downs[0][0], math.ceil(4000 / TARGET))]
    assert run.changes == [(downs[0][0], 15, 5)]


def test_short_spike_scales_up_once_then_returns_after_the_window() -> None:
    run = simulate(lambda t: 12000 if 900 <= t < 960 else 4000, 2400, replicas=5)
    ups = [(t, after) for t, before, after in run.changes if after > before]
    downs = [(t, after) for t, before, after in run.changes if after < before]
    assert 900 < ups[0][0] <= 900 + PERIOD_S
    assert len(ups) <= 2
    # No flapping: every change up comes before every change down. The way down may take a few
    # steps as the recommendations made while the backlog drained leave the window.
    assert run.changes == [(t, b, a) for t, b, a in run.changes if a > b] + [
        (t, b, a) for t, b, a in run.changes if a < b
    ]
    assert downs[0][0] >= ups[-1][0] + WINDOW_S
    assert downs[-1][0] - downs[0][0] <= 4 * PERIOD_S
    assert run.final == 5
    assert len(run.changes) <= 5


@pytest.mark.parametrize("seed", range(5))
def test_noisy_steady_load_changes_the_count_at_most_once(seed: int) -> None:
    rng = random.Random(seed)
    # ±10% per evaluation period around 10.5 replicas' worth at target: crosses the tolerance
    # band of the starting count sometimes, so the first change is allowed, the rest are flapping.
    noise = [rng.uniform(0.9, 1.1) for _ in range(7200 // PERIOD_S + 1)]
    run = simulate(lambda t: 8400 * noise[t // PERIOD_S], 7200, replicas=10)
    assert len(run.changes) <= 1
    assert run.under_provisioned_s() == 0


def test_zero_load_goes_to_min_replicas_after_the_window() -> None:
    policy = replace(POLICY, min_replicas=2)
    run = simulate(lambda t: 0.0, 1200, replicas=10, policy=policy)
    assert run.changes == [(WINDOW_S + PERIOD_S, 10, 2)]
    assert run.final == 2


def test_wrong_tokens_per_request_hint_still_covers_a_step_within_a_few_start_ups() -> None:
    # Requests are 4x longer than the policy assumes: the queue's growth understates demand 4x,
    # so the reaction is stepwise, but in the right direction and bounded.
    run = simulate(step(600, 4000, 12000), 2400, replicas=5, tokens_per_request=4 * TOKENS_PER_REQUEST)
    assert 600 < run.changes[0][0] <= 600 + PERIOD_S
    assert run.under_provisioned_s(since=600 + 4 * (PERIOD_S + STARTUP_S)) == 0


def test_scale_up_window_ignores_a_spike_shorter_than_it_and_follows_sustained_load() -> None:
    policy = replace(POLICY, scale_up_window_s=120)
    # 20 s at 8000 tok/s on 5 replicas: the queue drains 60 s later, so recommendations are
    # elevated for less than the window.
    spike = simulate(lambda t: 8000 if 900 <= t < 920 else 4000, 1800, replicas=5, policy=policy)
    assert spike.changes == []
    sustained = simulate(step(600, 4000, 12000), 1800, replicas=5, policy=policy)
    first_up = sustained.changes[0][0]
    assert 600 + 120 <= first_up <= 600 + 120 + PERIOD_S
    assert sustained.changes[0][2] > 5


def test_max_scale_down_step_limits_each_decision() -> None:
    policy = replace(POLICY, max_scale_down_step=2)
    run = simulate(step(600, 12000, 4000), 2400, replicas=15, policy=policy)
    steps = [before - after for _, before, after in run.changes]
    assert steps and all(0 < s <= 2 for s in steps)
    assert run.final == 5


# --- single decisions ----------------------------------------------------------------------


def test_replicas_that_never_become_ready_can_be_scaled_away() -> None:
    # 10 asked for, 4 ready (6 unschedulable), load for 2: the 6 count as carrying the target,
    # so the recommendation is 2 + 6 = 8 and the stuck pods are released.
    policy = replace(POLICY, scale_down_window_s=0)
    desired, _, reason = decide(policy, State(), Observation(0, 10, 2 * TARGET, ready_replicas=4))
    assert desired == 8
    assert "scale down" in reason


def test_starting_replicas_are_not_mistaken_for_spare_capacity() -> None:
    # Just scaled 5 -> 15; the 10 new replicas are starting and the 5 ready ones are saturated.
    obs = Observation(0, 15, 5 * CAPACITY, waiting_requests=20, ready_replicas=5)
    desired, _, _ = decide(POLICY, State(), obs)
    assert desired == 15


def test_no_ready_replica_keeps_the_count_and_scales_from_zero_on_waiting_requests() -> None:
    assert decide(POLICY, State(), Observation(0, 3, 0.0, ready_replicas=0)).replicas == 3
    scale_to_zero = replace(POLICY, min_replicas=0)
    assert decide(scale_to_zero, State(), Observation(0, 0, 0.0)).replicas == 0
    assert decide(scale_to_zero, State(), Observation(0, 0, 0.0, waiting_requests=3)).replicas == 1


def test_a_fresh_state_changes_nothing_until_the_windows_are_observed() -> None:
    # After an operator restart the history is gone: a dip must not scale down at once.
    policy = replace(POLICY, scale_up_window_s=60)
    state = State()
    for t in range(0, WINDOW_S, PERIOD_S):
        desired, state, _ = decide(policy, state, Observation(t, 10, TARGET))
        assert desired == 10
    assert decide(policy, state, Observation(WINDOW_S, 10, TARGET)).replicas == 1
    # Scale-up, with a window of 60 s, waits 60 s of observations too.
    state = State()
    for t in range(0, 60, PERIOD_S):
        desired, state, _ = decide(policy, state, Observation(t, 2, 10 * TARGET))
        assert desired == 2
    assert decide(policy, state, Observation(60, 2, 10 * TARGET)).replicas == 10


def test_count_outside_the_bounds_is_clamped() -> None:
    assert decide(POLICY, State(), Observation(0, 80, 80 * TARGET)).replicas == 50
    policy = replace(POLICY, min_replicas=4)
    assert decide(policy, State(), Observation(0, 2, 2 * TARGET)).replicas == 4


def test_from_spec() -> None:
    spec = AutoscalingSpec.model_validate(
        {"targetTokensPerSecondPerReplica": 500, "scaleUpStabilizationSeconds": 30, "evaluationPeriodSeconds": 10}
    )
    policy = ScalingPolicy.from_spec(spec, ReplicaRange.model_validate({"min": 2, "max": 8}))
    assert policy.target_tokens_per_second_per_replica == 500
    assert (policy.min_replicas, policy.max_replicas) == (2, 8)
    assert (policy.scale_up_window_s, policy.scale_down_window_s, policy.evaluation_period_s) == (30, 300, 10)


def test_invalid_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="tokens_per_second"):
        Observation(0, 1, -1.0)
    with pytest.raises(ValueError, match="waiting_requests"):
        Observation(0, 1, 0.0, waiting_requests=math.nan)
    with pytest.raises(ValueError, match="min_replicas"):
        ScalingPolicy(target_tokens_per_second_per_replica=1, min_replicas=3, max_replicas=2)
    with pytest.raises(ValueError, match="target"):
        ScalingPolicy(target_tokens_per_second_per_replica=0, min_replicas=1, max_replicas=2)


# --- properties ----------------------------------------------------------------------------

policies = st.builds(
    ScalingPolicy,
    target_tokens_per_second_per_replica=st.floats(1, 1e5),
    min_replicas=st.integers(0, 5),
    max_replicas=st.integers(5, 100),
    scale_up_window_s=st.sampled_from([0, 30, 120]),
    scale_down_window_s=st.sampled_from([0, 60, 300]),
    tolerance=st.floats(0, 0.3),
    max_scale_down_step=st.none() | st.integers(1, 5),
)
loads = st.tuples(st.floats(0, 1e7), st.floats(0, 1e5))  # (tokens/s, waiting requests)


@st.composite
def observations(draw: st.DrawFn, time: float = 0.0) -> Observation:
    replicas = draw(st.integers(0, 120))
    tokens, waiting = draw(loads)
    ready = draw(st.none() | st.integers(0, replicas + 2))
    return Observation(time, replicas, tokens, waiting_requests=waiting, ready_replicas=ready)


@settings(max_examples=300)
@given(policies, st.lists(observations(), min_size=1, max_size=20), st.lists(st.floats(1, 60), min_size=20))
def test_desired_is_always_within_bounds(policy: ScalingPolicy, seq: list[Observation], gaps: list[float]) -> None:
    state = State()
    now = 0.0
    for obs, gap in zip(seq, gaps, strict=False):
        now += gap
        desired, state, _ = decide(policy, state, replace(obs, time=now))
        assert policy.min_replicas <= desired <= policy.max_replicas


@settings(max_examples=300)
@given(policies, st.integers(0, 120), st.integers(0, 120), loads, loads)
def test_more_load_never_asks_for_fewer_replicas(
    policy: ScalingPolicy, replicas: int, ready: int, a: tuple[float, float], b: tuple[float, float]
) -> None:
    low = (min(a[0], b[0]), min(a[1], b[1]))
    high = (max(a[0], b[0]), max(a[1], b[1]))
    ready = min(ready, replicas)
    d_low = decide(policy, State(), Observation(0, replicas, low[0], low[1], ready)).replicas
    d_high = decide(policy, State(), Observation(0, replicas, high[0], high[1], ready)).replicas
    assert d_low <= d_high


@settings(max_examples=300)
@given(policies, observations(time=1000.0))
def test_a_steady_observation_settles_on_one_answer(policy: ScalingPolicy, obs: Observation) -> None:
    # Repeated past both windows, the same observation changes the count at most once (the
    # windows may delay the change), and the answer then stays.
    state = State()
    answers = []
    periods = math.ceil(policy.history_s / policy.evaluation_period_s) + 3
    for i in range(periods):
        desired, state, _ = decide(policy, state, replace(obs, time=obs.time + i * policy.evaluation_period_s))
        answers.append(desired)
    assert len(set(answers)) <= 2
    assert answers == sorted(answers) or answers == sorted(answers, reverse=True)
    assert answers[-1] == answers[-2] == answers[-3]
    if policy.history_s == 0:
        assert len(set(answers)) == 1
