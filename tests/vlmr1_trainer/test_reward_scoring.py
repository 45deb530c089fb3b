"""Bounded scoring: a completion over its budget scores the timeout score and is counted, in
process (timer signal) and in the worker pool (kill and replace); a reward that raises is
counted and logged once per kind; the pool scores exactly as the reward does in process."""

from __future__ import annotations

import logging
import os
import textwrap
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from vlmr1_trainer import rewards
from vlmr1_trainer.rewards.pool import PoolStartError, WorkerPool, default_workers
from vlmr1_trainer.rewards.scoring import ScoredReward

# Each "hang" would take this long; every test returns far sooner, which is the point.
HANG_SECONDS = 60.0


class _Spin(rewards.Reward):
    """Busy-loops (pure Python) on "hang"; raises on "boom"/"key"; else 1.0."""

    name = "spin"
    columns = ()

    def score(self, completion: str, sample: Mapping[str, Any]) -> float | None:
        if completion == "boom":
            raise RuntimeError("bug")
        if completion == "key":
            raise KeyError("k")
        deadline = time.monotonic() + (HANG_SECONDS if completion == "hang" else 0.0)
        while time.monotonic() < deadline:
            pass
        return 1.0


class _Stubborn(_Spin):
    """Swallows the first interruption with a bare except and spins on."""

    def score(self, completion: str, sample: Mapping[str, Any]) -> float | None:
        try:
            return super().score(completion, sample)
        except BaseException:
            return super().score(completion, sample)


class _CannotJudge(_Spin):
    timeout_score = None


def test_in_process_budget_interrupts_python_code_and_counts() -> None:
    scored = ScoredReward(_Spin(), budget=0.2)
    metrics: dict[str, float] = {}
    started = time.monotonic()
    assert scored(["ok", "hang", "ok"], log_metric=metrics.__setitem__) == [1.0, 0.0, 1.0]
    assert time.monotonic() - started < 5
    assert scored.last_outcomes == ["ok", "timeout", "ok"]
    assert metrics == {"rewards/spin/timeouts": 1.0, "rewards/spin/errors": 0.0}


def test_the_timer_rearms_until_it_gets_through_a_bare_except() -> None:
    scored = ScoredReward(_Stubborn(), budget=0.2)
    started = time.monotonic()
    assert scored(["hang"]) == [0.0]
    assert time.monotonic() - started < 5


def test_a_reward_meaning_cannot_judge_scores_none_over_budget() -> None:
    assert ScoredReward(_CannotJudge(), budget=0.1)(["hang", "ok"]) == [None, 1.0]


def test_off_the_main_thread_an_over_budget_score_is_replaced_after_the_fact() -> None:
    class _Sleepy(_Spin):
        def score(self, completion: str, sample: Mapping[str, Any]) -> float | None:
            time.sleep(0.3 if completion == "slow" else 0.0)
            return 1.0

    scored = ScoredReward(_Sleepy(), budget=0.1)
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(scored(["slow", "ok"])))
    thread.start()
    thread.join()
    assert out == [[0.0, 1.0]]
    assert scored.last_outcomes == ["timeout", "ok"]


def test_errors_are_counted_and_logged_once_per_kind(caplog: pytest.LogCaptureFixture) -> None:
    class _Buggy(_Spin):
        name = "buggy_for_logging_test"  # its own name: errors already logged for "spin" stay quiet

    scored = ScoredReward(_Buggy(), budget=1.0)
    metrics: dict[str, float] = {}
    with caplog.at_level(logging.ERROR):
        assert scored(["boom", "boom", "ok", "key", "boom"], log_metric=metrics.__setitem__) == [
            0.0,
            0.0,
            1.0,
            0.0,
            0.0,
        ]
        scored(["boom", "key"])
    logged = [r for r in caplog.records if "raised" in r.getMessage() and "buggy_for_logging_test" in r.getMessage()]
    assert sorted(r.getMessage().split(" raised ")[1].split(" ")[0] for r in logged) == ["KeyError", "RuntimeError"]
    assert metrics["rewards/buggy_for_logging_test/errors"] == 4.0
    assert scored.totals["error"] == 6


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    (tmp_path / "pool_rewards.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))  # workers import it from the same path


POOL_REWARDS = """
    import os, time

    def slow(completions, **kwargs):
        out = []
        for c in completions:
            if c == "hang":
                time.sleep(60)   # stands in for C code no signal can stop
            if c == "crash":
                os._exit(3)      # stands in for a segfault
            out.append(float(len(c)))
        return out

    slow.cpu_bound = True
    """


def test_the_pool_kills_a_worker_over_budget_and_replaces_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _module(tmp_path, monkeypatch, POOL_REWARDS)
    reward = rewards.build("pool_rewards:slow")
    assert reward.cpu_bound
    with WorkerPool({0: ("pool_rewards:slow", {})}, workers=2) as pool:
        scored = ScoredReward(reward, budget=0.5, pool=pool)
        started = time.monotonic()
        assert scored(["ab", "hang", "abc", "hang", "a"]) == [2.0, 0.0, 3.0, 0.0, 1.0]
        assert time.monotonic() - started < 10
        assert scored.last_outcomes == ["ok", "timeout", "ok", "timeout", "ok"]
        assert pool.replaced == 2
        assert scored(["abcd"]) == [4.0]  # the replacements score


def test_a_worker_that_dies_scores_zero_as_an_error_and_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _module(tmp_path, monkeypatch, POOL_REWARDS)
    with WorkerPool({0: ("pool_rewards:slow", {})}, workers=1) as pool:
        scored = ScoredReward(rewards.build("pool_rewards:slow"), budget=5.0, pool=pool)
        assert scored(["ab", "crash", "abc"]) == [2.0, 0.0, 3.0]
        assert scored.last_outcomes == ["ok", "error", "ok"]
        assert pool.replaced == 1


def test_a_worker_that_cannot_build_the_rewards_stops_the_start(tmp_path: Path) -> None:
    import sys
    import types

    module = types.ModuleType("only_in_the_parent")
    exec("def r(completions, **kw):\n    return [0.0] * len(completions)", module.__dict__)
    sys.modules["only_in_the_parent"] = module
    try:
        with pytest.raises(PoolStartError, match=r"could not build the rewards: .*only_in_the_parent"):
            WorkerPool({0: ("only_in_the_parent:r", {})}, workers=1).start()
    finally:
        del sys.modules["only_in_the_parent"]


def test_the_pool_scores_math_exactly_as_in_process() -> None:
    completions = [
        "<answer>4</answer>",
        "<answer>2+2</answer>",
        "<answer>\\frac{8}{2}</answer>",
        "5",
        "<answer>x</answer>",
    ]
    solution = ["<answer> 4 </answer>"] * len(completions)
    math_reward = rewards.build("math")
    assert math_reward.cpu_bound
    expected = math_reward(completions, solution=solution)
    with WorkerPool({3: ("math", {})}, workers=2) as pool:
        assert ScoredReward(math_reward, 5.0, pool, index=3)(completions, solution=solution) == expected
    assert expected == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_workers_follow_the_cpu_limit_shared_by_the_node_processes() -> None:
    assert default_workers(1, {"VLMR1_CPU_LIMIT": "6"}) == 6
    assert default_workers(4, {"VLMR1_CPU_LIMIT": "6"}) == 1
    assert default_workers(16, {"VLMR1_CPU_LIMIT": "2"}) == 1
    assert default_workers(1, {}) == len(os.sched_getaffinity(0))  # no limit given: the CPUs it may use
