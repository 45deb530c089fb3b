"""Watch streams of the simulated API: which stored changes a watcher sees, and in what form.

A watcher filters by resource type, namespace and selectors, and translates a change that moves
an object into or out of its selection the way the API server does: a MODIFIED object that starts
to match is sent as ADDED, one that stops matching as DELETED.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from vlmr1_devtools.devcluster.resources import ResourceType
from vlmr1_devtools.devcluster.selectors import Matcher


@dataclass(frozen=True)
class Change:
    """One committed change of the store (the watch history keeps the latest ones)."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    rt: ResourceType
    obj: dict[str, Any]
    old: dict[str, Any] | None = None


class Watcher:
    """One open watch. The store pushes matching events into ``queue`` from any thread (through
    the event loop's thread-safe scheduling), the proxy drains it onto the HTTP stream."""

    def __init__(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: Matcher,
        fields: Matcher,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.rt = rt
        self.namespace = namespace
        self._labels = labels
        self._fields = fields
        self._loop = loop
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def matches(self, obj: dict[str, Any]) -> bool:
        if self.namespace and obj.get("metadata", {}).get("namespace") != self.namespace:
            return False
        return self._labels(obj) and self._fields(obj)

    def translate(self, change: Change) -> dict[str, Any] | None:
        """The watch event this watcher sees for a change, or None."""
        if change.rt != self.rt:
            return None
        now = self.matches(change.obj)
        if change.type == "MODIFIED":
            before = change.old is not None and self.matches(change.old)
            if now and not before:
                return {"type": "ADDED", "object": change.obj}
            if before and not now:
                return {"type": "DELETED", "object": change.obj}
        return {"type": change.type, "object": change.obj} if now else None

    def put(self, event: dict[str, Any]) -> None:
        """Queue an event; callable from any thread."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: the watch is over anyway
            self._loop.call_soon_threadsafe(self.queue.put_nowait, event)

    def offer(self, change: Change) -> None:
        event = self.translate(change)
        if event is not None:
            self.put(event)


def expired_event(requested: int, oldest: int) -> dict[str, Any]:
    """The ERROR event the API server sends for a watch from a compacted resourceVersion (410)."""
    return {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f"too old resource version: {requested} ({oldest})",
            "reason": "Expired",
            "code": 410,
        },
    }


def bookmark_event(rt: ResourceType, resource_version: int, initial_events_end: bool = False) -> dict[str, Any]:
    """A BOOKMARK: only the kind and a resourceVersion (plus the watch-list end marker)."""
    metadata: dict[str, Any] = {"resourceVersion": str(resource_version)}
    if initial_events_end:
        metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": metadata}}
