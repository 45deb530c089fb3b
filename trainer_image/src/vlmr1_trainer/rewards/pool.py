"""Worker processes that score CPU-heavy rewards, each completion under a budget enforced by a kill.

One pool per trainer process, started once per run: its workers build the run's ``cpu_bound``
rewards themselves (from their names and params, so nothing unpicklable crosses), say they are
ready, then score one completion per message. A completion is handed to an idle worker with a
deadline; a worker past its deadline is killed (SIGKILL: math-verify's or a regex's C code
cannot be interrupted any other way), the completion scores the reward's timeout score, and a
replacement starts in the background, taking tasks once it says it is ready.

Workers come from a fork server with the reward modules (and math-verify) preloaded, so a
replacement is ready in milliseconds rather than re-importing sympy; the fork server is a
fresh interpreter, never a fork of a trainer holding CUDA, threads or a process group.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import time
import traceback
from collections import deque
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

from vlmr1_core.errors import UserError

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext
    from multiprocessing.process import BaseProcess

    from vlmr1_trainer.rewards.registry import Reward
    from vlmr1_trainer.rewards.scoring import Scored

__all__ = ["PoolStartError", "WorkerPool", "default_workers"]

logger = logging.getLogger(__name__)

#: How long a worker may take to import and build its rewards before the run stops.
START_TIMEOUT_SECONDS = 120.0
PRELOAD = ["vlmr1_trainer.rewards", "math_verify"]
#: Most completions sent to a worker in one message.
CHUNK = 16


class PoolStartError(UserError, RuntimeError):
    """A scoring worker could not build its rewards (an import or constructor failing there)."""


def default_workers(processes_per_node: int, environ: Mapping[str, str] | None = None) -> int:
    """Workers per trainer process: the pod's CPU limit (VLMR1_CPU_LIMIT, which the operator sets
    from the downward API; else the CPUs this process may run on) shared by the node's trainer
    processes, at least 1.

    >>> default_workers(2, {"VLMR1_CPU_LIMIT": "16"}), default_workers(8, {"VLMR1_CPU_LIMIT": "4"})
    (8, 1)
    """
    env = os.environ if environ is None else environ
    try:
        cpus = int(env.get("VLMR1_CPU_LIMIT", ""))
    except ValueError:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus // max(1, processes_per_node))


def _worker_main(conn: Connection, specs: dict[int, tuple[str, dict[str, Any]]]) -> None:
    # The parent handles Ctrl-C and stops the pool; a worker must not die mid-message on it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from vlmr1_trainer.rewards.registry import build

    try:
        rewards = {index: build(name, **params) for index, (name, params) in specs.items()}
    except BaseException as exc:  # reported to the parent, which stops the run with it
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        index, items = message
        for text, sample in items:  # one answer per completion: the parent times each one
            value, problem, error = rewards[index].score_caught(text, sample)
            trace = "".join(traceback.format_exception(error)) if error is not None else None
            kind = type(error).__qualname__ if error is not None else None
            conn.send((value, problem, kind, trace))


class _Worker:
    def __init__(self, context: BaseContext, specs: dict[int, tuple[str, dict[str, Any]]]) -> None:
        parent, child = context.Pipe()
        self.conn: Connection = parent
        self.process: BaseProcess = context.Process(  # type: ignore[attr-defined]
            target=_worker_main, args=(child, specs), daemon=True, name="vlmr1-reward-worker"
        )
        self.process.start()
        child.close()
        self.ready = False
        self.started = time.monotonic()
        self.queue: deque[int] = deque()
        """Tasks sent and not yet answered, in order: the first is being scored."""
        self.current_since = 0.0
        """When the first queued task began: when it was sent, or when the one before it was answered."""

    @property
    def deadline(self) -> float:
        return self.current_since + self.budget

    budget = 0.0

    def kill(self) -> None:
        self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class WorkerPool:
    """``workers`` processes scoring the rewards in ``specs`` (reward index -> (name, params))."""

    def __init__(self, specs: Mapping[int, tuple[str, Mapping[str, Any]]], workers: int) -> None:
        if workers < 1:
            raise ValueError(f"a pool needs at least one worker, got {workers}")
        self.specs = {i: (name, dict(params)) for i, (name, params) in specs.items()}
        self.size = workers
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(PRELOAD)
        self.workers: list[_Worker] = []
        self.replaced = 0

    def __repr__(self) -> str:
        return f"WorkerPool({self.size} workers, rewards {sorted(n for n, _ in self.specs.values())})"

    def start(self) -> None:
        """Start every worker and wait until all have built their rewards (once per run)."""
        if self.workers:
            return
        self.workers = [_Worker(self.context, self.specs) for _ in range(self.size)]
        while not all(w.ready for w in self.workers):
            self._await_ready(min(w.started for w in self.workers if not w.ready) + START_TIMEOUT_SECONDS)

    def close(self) -> None:
        """Stop the workers (each finishes nothing: a run ends between batches)."""
        for worker in self.workers:
            with contextlib.suppress(OSError):  # already gone
                worker.conn.send(None)
        for worker in self.workers:
            worker.process.join(timeout=2)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=2)
            worker.conn.close()
        self.workers = []

    def __enter__(self) -> WorkerPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def score(
        self, index: int, items: Sequence[tuple[str, Mapping[str, Any]]], budget: float, reward: Reward
    ) -> list[Scored]:
        """Score ``items`` (completion text, columns) with reward ``index``, each under ``budget``.

        Workers get a few completions per message (fewer round trips) and answer each one as it
        is scored, so every completion still has its own deadline: from when the answer before
        it arrived. A worker past a deadline is killed; its unanswered completions go back to
        the queue, the one it was on scores the timeout score.
        """
        from vlmr1_trainer.rewards.registry import log_error_once
        from vlmr1_trainer.rewards.scoring import Scored, classify

        self.start()
        results: list[Scored | None] = [None] * len(items)
        pending = deque(range(len(items)))
        while pending or any(w.queue for w in self.workers):
            self._dispatch(index, items, pending, budget)
            busy = [w for w in self.workers if w.queue]
            waiting = [w for w in self.workers if not w.ready]
            if not busy and not waiting:
                continue
            deadlines = [w.deadline for w in busy] or [min(w.started for w in waiting) + START_TIMEOUT_SECONDS]
            ready = wait([w.conn for w in busy + waiting], timeout=max(0.0, min(deadlines) - time.monotonic()))
            if not ready and waiting and not busy and time.monotonic() >= deadlines[0]:
                self.close()
                raise PoolStartError(f"a replacement scoring worker was not ready after {START_TIMEOUT_SECONDS:g} s")
            for worker in [w for w in busy + waiting if w.conn in ready]:
                if not worker.ready:
                    self._on_ready_message(worker)
                    continue
                while worker.queue and worker.conn.poll():
                    done = worker.queue[0]
                    try:
                        value, problem, kind, trace = worker.conn.recv()
                    except (EOFError, OSError):  # the worker died (a crash in C code, out of memory)
                        code = worker.process.exitcode
                        results[done] = Scored(0.0, "error", f"the scoring worker died (exit {code})")
                        log_error_once(reward.name, "the scoring worker process died", kind="WorkerDied")
                        worker.queue.popleft()
                        pending.extendleft(reversed(worker.queue))
                        self._replace(worker)
                        break
                    worker.queue.popleft()
                    worker.current_since = time.monotonic()
                    if trace is not None:
                        log_error_once(reward.name, trace, kind=kind)
                    results[done] = classify(value, problem)
            now = time.monotonic()
            for worker in [w for w in self.workers if w.queue and w.deadline <= now]:
                late = worker.queue.popleft()
                results[late] = Scored(
                    reward.timeout_score, "timeout", f"over the {budget:g} s budget, scored {reward.timeout_score}"
                )
                pending.extendleft(reversed(worker.queue))
                self._replace(worker)
        return [r for r in results if r is not None]

    def _dispatch(
        self, index: int, items: Sequence[tuple[str, Mapping[str, Any]]], pending: deque[int], budget: float
    ) -> None:
        """Give each idle, ready worker its share of the pending completions."""
        idle = [w for w in self.workers if w.ready and not w.queue]
        for worker in idle:
            if not pending:
                return
            # A fair share, at most CHUNK: large enough to save round trips, small enough that
            # workers finish together.
            size = max(1, min(CHUNK, len(pending) // len(self.workers)))
            tasks = [pending.popleft() for _ in range(min(size, len(pending)))]
            try:
                worker.conn.send((index, [(items[t][0], dict(items[t][1])) for t in tasks]))
            except OSError:  # died between batches: put the tasks back, replace the worker
                pending.extendleft(reversed(tasks))
                self._replace(worker)
                continue
            worker.queue.extend(tasks)
            worker.budget = budget
            worker.current_since = time.monotonic()

    def _replace(self, worker: _Worker) -> None:
        """Kill ``worker`` and start its replacement, which takes tasks once it is ready."""
        worker.kill()
        self.workers[self.workers.index(worker)] = _Worker(self.context, self.specs)
        self.replaced += 1

    def _on_ready_message(self, worker: _Worker) -> None:
        try:
            status, detail = worker.conn.recv()
        except (EOFError, OSError):
            status, detail = (
                "failed",
                'it stopped before it was ready (is the main module guarded by if __name__ == "__main__"?)',
            )
        if status != "ready":
            self.close()
            raise PoolStartError(f"a reward scoring worker could not build the rewards: {detail}")
        worker.ready = True

    def _await_ready(self, deadline: float) -> None:
        waiting = [w for w in self.workers if not w.ready]
        ready = wait([w.conn for w in waiting], timeout=max(0.0, deadline - time.monotonic()))
        if not ready:
            self.close()
            raise PoolStartError(f"reward scoring workers were not ready after {START_TIMEOUT_SECONDS:g} s")
        for worker in waiting:
            if worker.conn in ready:
                self._on_ready_message(worker)
