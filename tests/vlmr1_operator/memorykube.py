"""Just enough of k8s.Kube for the controllers: objects in a dict, merge-patched status, recorded
events and scale calls, and errors injected into chosen calls."""

from __future__ import annotations

import copy
import threading
from collections import Counter
from typing import Any

from vlmr1_operator import k8s

ObjectKey = tuple[str, str, str]


class MemoryKube:
    def __init__(self) -> None:
        self.objects: dict[ObjectKey, dict[str, Any]] = {}
        self.events: list[tuple[str, str, str]] = []
        """(name, reason, message) of every Event posted."""
        self.scaled: list[tuple[str, int]] = []
        self.calls: Counter[str] = Counter()
        self.failures: dict[str, list[k8s.ApiError]] = {}
        """Errors the next calls of a method raise, in order (then it works again)."""
        self.status_written = threading.Event()
        """Set by every successful status patch."""

    def fail(self, method: str, *errors: k8s.ApiError) -> None:
        self.failures.setdefault(method, []).extend(errors)

    def _call(self, method: str) -> None:
        self.calls[method] += 1
        pending = self.failures.get(method)
        if pending:
            raise pending.pop(0)

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        self.objects[(k8s.resource_of(obj).plural, meta["namespace"], meta["name"])] = obj
        return obj

    def live(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        return self.objects[(plural, namespace, name)]

    def get(self, resource: k8s.Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        self._call("get")
        found = self.objects.get((resource.plural, namespace or "", name))
        return copy.deepcopy(found) if found is not None else None

    def list(self, resource: k8s.Resource, namespace: str | None, labels: dict[str, str]) -> list[dict[str, Any]]:
        self._call("list")
        return [
            copy.deepcopy(o) for (plural, ns, _), o in self.objects.items()
            if plural == resource.plural and namespace in (None, ns)
            and labels.items() <= (o["metadata"].get("labels") or {}).items()
        ]  # fmt: skip

    def ensure(self, obj: dict[str, Any]) -> bool:
        self._call("ensure")
        live = self.objects.get((k8s.resource_of(obj).plural, obj["metadata"]["namespace"], obj["metadata"]["name"]))
        self.put({**copy.deepcopy(obj), **({"status": live["status"]} if live and "status" in live else {})})
        return True

    def delete(self, resource: k8s.Resource, namespace: str, name: str) -> bool:
        self._call("delete")
        return self.objects.pop((resource.plural, namespace, name), None) is not None

    def scale(self, resource: k8s.Resource, namespace: str, name: str, replicas: int) -> None:
        self._call("scale")
        self.objects[(resource.plural, namespace, name)]["spec"]["replicas"]["count"] = replicas
        self.scaled.append((name, replicas))

    def patch_status(self, resource: k8s.Resource, namespace: str, name: str, status: dict[str, Any]) -> None:
        self._call("patch_status")
        obj = self.objects[(resource.plural, namespace, name)]
        merged = {**obj.get("status", {}), **status}
        obj["status"] = {k: v for k, v in merged.items() if v is not None}
        self.status_written.set()

    def post_event(self, owner: dict[str, Any], type_: str, reason: str, message: str, now: str) -> None:
        self._call("post_event")
        self.events.append((owner["metadata"]["name"], reason, message))
