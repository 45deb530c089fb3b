"""When an object is reconciled though no watch event came: one due time per object, and the
leader's loop that sleeps until the earliest.

A watch event (handlers/) reconciles its object at once. What no event announces is a due
time here, which every reconcile of the object sets from what it found; the latest reading
decides, so it replaces the object's earlier due time (though not a sooner one set while it
ran, for a change it may not have seen):

* the planner's ``requeue_after``: a GRPOJob's activeDeadlineSeconds or TTL coming due, a
  running job's next progress read (``progress_poll_seconds``), an autoscaled VLMService's
  next evaluation period; nothing when only a change can matter;
* a failed reconcile (any API error: a 5xx, a 409 Conflict, a dropped connection): the object
  again after ``retry_seconds``, doubling with each failure in a row up to
  ``max_retry_seconds``, back to ``retry_seconds`` after a success (sooner if it was already
  due sooner);
* a sweep every ``resync_seconds``: every object once, in case a watch event was lost (a
  deleted child of a settled object comes back then), and the state kept for objects that no
  longer exist is pruned.

The loop sleeps until the earliest due time; a due time set sooner (an error's retry, a
VLMService woken by its GRPOJob's event) wakes it early. Only the leader acts: with peering,
each pass first asks whether a live peer outranks this replica (kopf pauses that replica's
handlers too) and drops what was due if one does; a new leader's watches list every object
afresh, and those reconciles schedule them there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from vlmr1_operator import k8s

if TYPE_CHECKING:
    from vlmr1_operator.handlers.base import Controller

log = logging.getLogger(__name__)

Key = tuple[str, str, str]
"""(kind, namespace, name) of one object."""

#: The sweep's own entry in the queue.
SWEEP: Key = ("", "", "")


class DueQueue:
    """One due time per object, on `clock` (monotonic seconds); thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._due: dict[Key, float] = {}
        self._set: dict[Key, int] = {}
        """When (in schedule calls) each due time was set."""
        self._calls = 0
        self._changed = threading.Condition()
        self._closed = False

    def mark(self) -> int:
        """A point in the queue's history, for `schedule(..., since=)`."""
        with self._changed:
            return self._calls

    def schedule(self, key: Key, delay: float | None, *, sooner_only: bool = False, since: int | None = None) -> None:
        """Make `key` due `delay` seconds from now (None: not due at all), replacing its due time.

        With `sooner_only`, only if that is sooner than the one it has. With `since` (a mark
        taken when a reconcile began), a due time set after the mark is kept if it is sooner:
        it was set for a change the reconcile may not have seen (a GRPOJob's event waking
        the services that follow it).
        """
        with self._changed:
            self._calls += 1
            current = self._due.get(key)
            changed_meanwhile = since is not None and current is not None and self._set[key] > since
            if delay is None:
                if not changed_meanwhile:
                    self._due.pop(key, None)
                    self._set.pop(key, None)
                return
            at = self.clock() + max(delay, 0.0)
            if (sooner_only or changed_meanwhile) and current is not None and current < at:
                return
            self._due[key], self._set[key] = at, self._calls
            self._changed.notify_all()

    def due_in(self, key: Key) -> float | None:
        """Seconds until `key` is due (0 or less: due now); None when it is not scheduled."""
        with self._changed:
            at = self._due.get(key)
            return None if at is None else at - self.clock()

    def scheduled(self) -> set[Key]:
        """Every key with a due time."""
        with self._changed:
            return set(self._due)

    def pop_due(self) -> list[Key]:
        """The keys due now, earliest first, taken off the queue."""
        with self._changed:
            now = self.clock()
            due = sorted((at, key) for key, at in self._due.items() if at <= now)
            for _, key in due:
                del self._due[key], self._set[key]
            return [key for _, key in due]

    def wait(self) -> bool:
        """Block until a key is due or one was scheduled (it may be sooner); False once closed."""
        with self._changed:
            if not self._closed:
                timeout = min(self._due.values()) - self.clock() if self._due else None
                if timeout is None or timeout > 0:
                    self._changed.wait(timeout)
            return not self._closed

    def close(self) -> None:
        """End every wait (the loop stops)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def __len__(self) -> int:
        with self._changed:
            return len(self._due)


class Resync:
    """The loop: wait for the earliest due time, reconcile what is due (a few at a time), repeat."""

    def __init__(
        self,
        controllers: Sequence[Controller],
        queue: DueQueue,
        *,
        is_leader: Callable[[], bool],
        namespaces: Sequence[str | None] = (None,),
        workers: int = 4,
    ) -> None:
        self.controllers = {c.KIND: c for c in controllers}
        self.queue, self.is_leader, self.namespaces = queue, is_leader, namespaces
        self.settings = controllers[0].settings
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vlmr1-resync")
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Run the loop in a thread of its own (reconciles make blocking API calls)."""
        self.queue.schedule(SWEEP, 0)
        self._thread = threading.Thread(target=self.run, name="vlmr1-resync", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.queue.close()
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def run(self) -> None:
        while self.queue.wait():
            self.step()

    def step(self) -> list[Key]:
        """One pass: reconcile every object due now (each pass asks first whether we lead); the keys done."""
        due = self.queue.pop_due()
        if not due:
            return []
        try:
            leading = self.is_leader()
        except k8s.ApiError as exc:
            log.warning(
                "cannot tell whether this replica leads (%s); retrying in %s s", exc, self.settings.retry_seconds
            )
            for key in due:
                self.queue.schedule(key, self.settings.retry_seconds, sooner_only=True)
            return []
        if not leading:
            # The leader reconciles these; if we lead again, our watches list everything afresh.
            self.queue.schedule(SWEEP, self.settings.resync_seconds, sooner_only=True)
            return []
        if SWEEP in due:
            due.remove(SWEEP)
            due += [key for key in self.sweep() if key not in due]
        list(self._pool.map(self._reconcile, due))
        return due

    def sweep(self) -> list[Key]:
        """Every object of every kind (and prune what is kept for those that are gone); schedules the next."""
        keys: list[Key] = []
        try:
            for controller in self.controllers.values():
                known = controller.tracked()
                alive: set[tuple[str, str]] = set()
                for namespace in self.namespaces:
                    for body in controller.kube.list(controller.RESOURCE, namespace, {}):
                        alive.add((body["metadata"]["namespace"], body["metadata"]["name"]))
                for namespace, name in known - alive:
                    controller.forget(namespace, name)
                keys += [controller.key(namespace, name) for namespace, name in sorted(alive)]
        except k8s.ApiError as exc:
            log.warning("resync sweep failed, retrying in %s s: %s", self.settings.retry_seconds, exc)
            self.queue.schedule(SWEEP, self.settings.retry_seconds)
            return keys
        self.queue.schedule(SWEEP, self.settings.resync_seconds)
        return keys

    def _reconcile(self, key: Key) -> None:
        kind, namespace, name = key
        controller = self.controllers[kind]
        try:
            controller.reconcile(namespace, name)
        except Exception:  # one object's bug must not end the loop for all others: logged, retried with backoff
            delay = controller.retry_later(namespace, name)
            log.exception("reconcile of %s %s/%s crashed; retrying in %.3g s", kind, namespace, name, delay)


def wake(queue: DueQueue, keys: Iterable[Key]) -> None:
    """Make `keys` due now (the loop reconciles them on its next pass)."""
    for key in keys:
        queue.schedule(key, 0, sooner_only=True)
