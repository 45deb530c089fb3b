"""The simulated core API: an in-memory object store with Kubernetes semantics.

What it keeps like the API server: one global resourceVersion counter, uid, generation (bumped
when anything outside ``metadata`` and ``status`` changes), creationTimestamp, generateName,
optimistic concurrency (409 Conflict), the status subresource split (the main resource ignores
``status``, ``/status`` changes only ``status``), no-op writes that change nothing (not even the
resourceVersion), finalizers (a delete sets ``deletionTimestamp``; the object goes when the last
finalizer is removed), and the garbage collector (dependents go when all their owners are gone;
``propagationPolicy=Orphan`` strips the owner reference instead). Watches replay a bounded history.

What it simplifies: deletion is immediate (no grace period: pods vanish as if the kubelet had
confirmed at once; Foreground behaves like Background), names are checked as DNS subdomains but
objects are not otherwise validated (pods only need containers with a name and an image),
namespaces need not exist, and deleting a Namespace deletes only the simulated objects in it.

Thread safety: every public method takes one re-entrant lock; watchers are fed through their
event loop's ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import re
import secrets
import threading
import uuid
from collections import deque
from collections.abc import Iterable
from typing import Any

from vlmr1_devtools.devcluster import errors
from vlmr1_devtools.devcluster.errors import StatusError
from vlmr1_devtools.devcluster.patches import PatchError, json_patch, merge_patch, strategic_merge_patch
from vlmr1_devtools.devcluster.resources import RESOURCE_TYPES, ResourceType
from vlmr1_devtools.devcluster.selectors import Matcher, field_selector, label_selector
from vlmr1_devtools.devcluster.watch import Change, Watcher, bookmark_event, expired_event

Key = tuple[str, str]  # (namespace, name); namespace "" when cluster-scoped
Obj = dict[str, Any]

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what the API server uses for generateName
PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/json-patch+json": "json",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "unsupported",
}


def now_timestamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _content(obj: Obj) -> Obj:
    """What generation tracks: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _without_rv(obj: Obj) -> Obj:
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k != "resourceVersion"}
    return {**obj, "metadata": meta}


class Store:
    """Objects of the simulated resource types, their history and their watchers."""

    def __init__(self, types: Iterable[ResourceType] = RESOURCE_TYPES, history_size: int = 20_000) -> None:
        self.types = tuple(types)
        self._lock = threading.RLock()
        self._rv = 1
        self._objects: dict[ResourceType, dict[Key, Obj]] = {rt: {} for rt in self.types}
        self._uids: dict[str, tuple[ResourceType, Key]] = {}
        self._history: deque[Change] = deque()
        self._history_size = history_size
        self._compacted = 0  # the newest resourceVersion no longer in the history
        self._watchers: set[Watcher] = set()
        self._gone_external: set[str] = set()  # uids of owners outside the store known to be deleted
        self._next_ip = 10
        self._store_kinds = {(rt.group, rt.kind) for rt in self.types}
        ns_type = self.find("", "namespaces")
        if ns_type is not None:
            for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
                self.create(ns_type, None, {"metadata": {"name": ns}})

    # -- lookup ----------------------------------------------------------------

    def find(self, group: str, plural: str) -> ResourceType | None:
        return next((rt for rt in self.types if rt.group == group and rt.plural == plural), None)

    @property
    def resource_version(self) -> str:
        with self._lock:
            return str(self._rv)

    def _key(self, rt: ResourceType, namespace: str | None, name: str) -> Key:
        return ((namespace or "") if rt.namespaced else "", name)

    def _stored(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self._objects[rt].get(self._key(rt, namespace, name))
        if obj is None:
            raise errors.not_found(rt.plural, name, rt.group)
        return obj

    # -- reads -----------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        with self._lock:
            return copy.deepcopy(self._stored(rt, namespace, name))

    def list_objects(
        self, rt: ResourceType, namespace: str | None, labels: str | None = None, fields: str | None = None
    ) -> tuple[list[Obj], str]:
        """Matching objects sorted by namespace and name, and the list's resourceVersion."""
        match_labels, match_fields = label_selector(labels), field_selector(fields)
        with self._lock:
            items = [
                copy.deepcopy(obj)
                for key, obj in sorted(self._objects[rt].items())
                if (not namespace or not rt.namespaced or key[0] == namespace)
                and match_labels(obj)
                and match_fields(obj)
            ]
            return items, str(self._rv)

    # -- writes ----------------------------------------------------------------

    def _commit(self, type_: str, rt: ResourceType, obj: Obj, old: Obj | None = None) -> Obj:
        """Give obj the next resourceVersion, store (or drop) it and tell the watchers."""
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        key = self._key(rt, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        if type_ == "DELETED":
            self._objects[rt].pop(key, None)
            self._uids.pop(obj["metadata"]["uid"], None)
        else:
            self._objects[rt][key] = obj
            self._uids[obj["metadata"]["uid"]] = (rt, key)
        change = Change(self._rv, type_, rt, obj, old)
        self._history.append(change)
        while len(self._history) > self._history_size:
            self._compacted = self._history.popleft().rv
        for watcher in list(self._watchers):
            watcher.offer(change)
        return obj

    def create(self, rt: ResourceType, namespace: str | None, body: Any, dry_run: bool = False) -> Obj:
        if not isinstance(body, dict):
            raise errors.bad_request(f"the body of a {rt.kind} must be a JSON object")
        if body.get("kind") not in (None, rt.kind):
            raise errors.bad_request(f"the kind of the object ({body.get('kind')}) is not {rt.kind}")
        obj = copy.deepcopy(body)
        obj["kind"], obj["apiVersion"] = rt.kind, rt.api_version
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        with self._lock:
            if rt.namespaced:
                if namespace and meta.get("namespace") not in (None, "", namespace):
                    raise errors.bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request"
                    )
                meta["namespace"] = namespace or meta.get("namespace") or "default"
            else:
                meta.pop("namespace", None)
            if not meta.get("name"):
                prefix = meta.get("generateName")
                if not prefix:
                    raise errors.invalid(
                        rt.kind, "", "metadata.name", "Required value: name or generateName is required", rt.group
                    )
                meta["name"] = prefix + "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))
            name = meta["name"]
            self._validate_name(rt, name, meta.get("generateName"))
            if self._key(rt, meta.get("namespace"), name) in self._objects[rt]:
                raise errors.already_exists(rt.plural, name, rt.group)
            self._default(rt, obj)
            for field in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "resourceVersion"):
                meta.pop(field, None)
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_timestamp(), generation=1)
            if dry_run:
                return obj
            return copy.deepcopy(self._commit("ADDED", rt, obj))

    def _validate_name(self, rt: ResourceType, name: Any, generate_name: Any) -> None:
        pattern, limit = (_LABEL, 63) if rt.plural == "namespaces" else (_SUBDOMAIN, 253)
        if not isinstance(name, str) or len(name) > limit or not pattern.match(name):
            field = (
                "metadata.generateName" if generate_name and not pattern.match(f"{generate_name}x") else "metadata.name"
            )
            shown = generate_name if field == "metadata.generateName" else name
            raise errors.invalid(
                rt.kind,
                str(name),
                field,
                f'Invalid value: "{shown}": a lowercase RFC 1123 '
                f"{'label' if pattern is _LABEL else 'subdomain'} must consist of lower case alphanumeric "
                "characters, '-' or '.', and must start and end with an alphanumeric character",
                rt.group,
            )

    def _default(self, rt: ResourceType, obj: Obj) -> None:
        """Per-kind defaults and checks on create (what the real registry strategies do)."""
        name = obj["metadata"]["name"]
        if rt.kind == "Pod":
            containers = (obj.get("spec") or {}).get("containers")
            if not isinstance(containers, list) or not containers:
                raise errors.invalid("Pod", name, "spec.containers", "Required value")
            for i, c in enumerate(containers):
                for field in ("name", "image"):
                    if not isinstance(c, dict) or not c.get(field):
                        raise errors.invalid("Pod", name, f"spec.containers[{i}].{field}", "Required value")
            obj["status"] = {"phase": "Pending"}
        elif rt.kind == "Service":
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            for port in spec.get("ports") or []:
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
            if not spec.get("clusterIP") and spec["type"] != "ExternalName":
                self._next_ip += 1
                spec["clusterIP"] = f"10.96.{self._next_ip // 250}.{self._next_ip % 250 + 1}"
            if spec.get("clusterIP"):
                spec.setdefault("clusterIPs", [spec["clusterIP"]])
            obj["status"] = {"loadBalancer": {}}
        elif rt.kind == "Namespace":
            meta = obj["metadata"]
            meta["labels"] = {**(meta.get("labels") or {}), "kubernetes.io/metadata.name": name}
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
        elif rt.status_subresource:
            obj.pop("status", None)  # custom resources with a status subresource drop it on create

    def replace(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """PUT: a full replacement, conditional on metadata.resourceVersion when it is given."""
        if not isinstance(body, dict):
            raise errors.bad_request(f"the body of a {rt.kind} must be a JSON object")
        meta = body.get("metadata") or {}
        if meta.get("name") not in (None, name):
            raise errors.bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL")
        with self._lock:
            old = self._stored(rt, namespace, name)
            if meta.get("resourceVersion") not in (None, "", old["metadata"]["resourceVersion"]):
                raise errors.conflict(rt.plural, name, rt.group)
            return self._update(rt, old, body, subresource, dry_run)

    def patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        content_type: str,
        patch: Any,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """PATCH with one of PATCH_TYPES; returns (object, created) since apply may create."""
        kind = PATCH_TYPES.get(content_type)
        if kind is None or kind == "unsupported":
            raise StatusError(
                415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {content_type}"
            )
        with self._lock:
            key = self._key(rt, namespace, name)
            if kind == "apply" and key not in self._objects[rt] and subresource is None:
                # Server-side apply, simplified: create what was applied, else merge it in (below).
                body = copy.deepcopy(patch) if isinstance(patch, dict) else {}
                body.setdefault("metadata", {})["name"] = name
                return self.create(rt, namespace, body, dry_run), True
            old = self._stored(rt, namespace, name)
            if kind != "json" and not isinstance(patch, dict):
                raise errors.bad_request("a merge patch must be a JSON object")
            try:
                if kind == "merge":
                    new = merge_patch(old, patch)
                elif kind == "json":
                    new = json_patch(old, patch)
                else:
                    new = strategic_merge_patch(old, patch)
            except PatchError as exc:
                message = f"the server rejected our request due to an error in our request: {exc}"
                raise StatusError(422, "Invalid", message) from None
            if not isinstance(new, dict):
                raise StatusError(422, "Invalid", "the patch does not leave an object")
            if (new.get("metadata") or {}).get("resourceVersion") not in (None, old["metadata"]["resourceVersion"]):
                raise errors.conflict(rt.plural, name, rt.group)
            return self._update(rt, old, new, subresource, dry_run), False

    def _update(self, rt: ResourceType, old: Obj, body: Obj, subresource: str | None, dry_run: bool) -> Obj:
        old_meta = old["metadata"]
        if subresource == "status":
            new = copy.deepcopy(old)
            if "status" in body:
                new["status"] = copy.deepcopy(body["status"])
            else:
                new.pop("status", None)
        else:
            new = copy.deepcopy(body)
            if rt.status_subresource:  # the main resource ignores status changes
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
        new["kind"], new["apiVersion"] = rt.kind, rt.api_version
        meta = new.setdefault("metadata", {})
        for field in ("name", "namespace", "uid", "creationTimestamp", "generateName", "generation"):
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):  # set by DELETE only
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if not meta.get("finalizers"):
            meta.pop("finalizers", None)
        if new == old:
            return copy.deepcopy(old)  # a no-op write changes nothing, not even the resourceVersion
        if _content(new) != _content(old):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        if dry_run:
            return new
        self._commit("MODIFIED", rt, new, old)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(rt, new)
        return copy.deepcopy(new)

    # -- deletion and garbage collection -----------------------------------------

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        propagation: str | None = None,
        preconditions: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """Delete (or, with finalizers, mark for deletion); returns (object, gone)."""
        with self._lock:
            obj = self._stored(rt, namespace, name)
            for field in ("uid", "resourceVersion"):
                wanted = (preconditions or {}).get(field)
                if wanted and wanted != obj["metadata"].get(field):
                    raise StatusError(
                        409,
                        "Conflict",
                        f"Precondition failed: {field} in precondition: {wanted}, "
                        f"{field} in object meta: {obj['metadata'].get(field)}",
                    )
            if dry_run:
                return copy.deepcopy(obj), False
            if propagation == "Orphan":
                self._orphan(obj["metadata"]["uid"])
            return self._delete_object(rt, obj)

    def delete_collection(
        self, rt: ResourceType, namespace: str | None, labels: str | None, fields: str | None
    ) -> list[Obj]:
        with self._lock:
            items, _ = self.list_objects(rt, namespace, labels, fields)
            return [
                self._delete_object(rt, self._stored(rt, o["metadata"].get("namespace"), o["metadata"]["name"]))[0]
                for o in items
            ]

    def _delete_object(self, rt: ResourceType, obj: Obj) -> tuple[Obj, bool]:
        if obj["metadata"].get("finalizers"):
            if obj["metadata"].get("deletionTimestamp"):
                return copy.deepcopy(obj), False
            marked = copy.deepcopy(obj)
            marked["metadata"].update(deletionTimestamp=now_timestamp(), deletionGracePeriodSeconds=0)
            return copy.deepcopy(self._commit("MODIFIED", rt, marked, obj)), False
        return copy.deepcopy(self._remove(rt, obj)), True

    def _remove(self, rt: ResourceType, obj: Obj) -> Obj:
        gone = self._commit("DELETED", rt, copy.deepcopy(obj), obj)
        if rt.kind == "Namespace":  # the namespace controller, minus custom resources
            ns = gone["metadata"]["name"]
            for other in self.types:
                if other.namespaced:
                    for key in [k for k in self._objects[other] if k[0] == ns]:
                        child = self._objects[other].get(key)  # may be gone through the GC already
                        if child is not None:
                            self._delete_object(other, child)
        self._collect(gone["metadata"]["uid"])
        return gone

    def _owner_alive(self, ref: dict[str, Any]) -> bool:
        uid = ref.get("uid", "")
        if uid in self._uids:
            return True
        group = str(ref.get("apiVersion", "")).rpartition("/")[0]
        if (group, ref.get("kind")) in self._store_kinds:
            return False
        return uid not in self._gone_external  # unknown external owners count as alive

    def _collect(self, owner_uid: str) -> None:
        """The garbage collector for the dependents of one deleted owner."""
        for rt in self.types:
            for obj in list(self._objects[rt].values()):
                current = self._objects[rt].get(
                    self._key(rt, obj["metadata"].get("namespace"), obj["metadata"]["name"])
                )
                if current is None:
                    continue  # already collected through another owner
                refs = current["metadata"].get("ownerReferences") or []
                if not any(r.get("uid") == owner_uid for r in refs):
                    continue
                if any(self._owner_alive(r) for r in refs):
                    self._strip_owner(rt, current, {owner_uid})
                else:
                    self._delete_object(rt, current)

    def _strip_owner(self, rt: ResourceType, obj: Obj, uids: set[str]) -> None:
        new = copy.deepcopy(obj)
        refs = [r for r in new["metadata"].get("ownerReferences") or [] if r.get("uid") not in uids]
        if refs:
            new["metadata"]["ownerReferences"] = refs
        else:
            new["metadata"].pop("ownerReferences", None)
        self._commit("MODIFIED", rt, new, obj)

    def _orphan(self, owner_uid: str) -> None:
        for rt in self.types:
            for obj in list(self._objects[rt].values()):
                if any(r.get("uid") == owner_uid for r in obj["metadata"].get("ownerReferences") or []):
                    self._strip_owner(rt, obj, {owner_uid})

    def owner_gone(self, uid: str) -> None:
        """An owner outside the store (a custom resource on the real server) is deleted."""
        with self._lock:
            self._gone_external.add(uid)
            self._collect(uid)

    def external_owners(self) -> list[tuple[str, str, str, str, str]]:
        """Distinct owners outside the store still counted as alive:
        (apiVersion, kind, namespace of the dependent, name, uid)."""
        with self._lock:
            found: set[tuple[str, str, str, str, str]] = set()
            for rt in self.types:
                for (ns, _name), obj in self._objects[rt].items():
                    for ref in obj["metadata"].get("ownerReferences") or []:
                        group = str(ref.get("apiVersion", "")).rpartition("/")[0]
                        if (group, ref.get("kind")) not in self._store_kinds and self._owner_alive(ref):
                            found.add(
                                (
                                    ref.get("apiVersion", ""),
                                    ref.get("kind", ""),
                                    ns,
                                    ref.get("name", ""),
                                    ref.get("uid", ""),
                                )
                            )
            return sorted(found)

    def sweep(self) -> int:
        """Delete every object whose owners are all gone (dependents created after their owner
        was deleted, or owned by a store object that never existed); returns how many."""
        with self._lock:
            doomed = [
                (rt, obj)
                for rt in self.types
                for obj in self._objects[rt].values()
                if obj["metadata"].get("ownerReferences")
                and not obj["metadata"].get("deletionTimestamp")
                and not any(self._owner_alive(r) for r in obj["metadata"]["ownerReferences"])
            ]
            for rt, obj in doomed:
                self._delete_object(rt, obj)
            return len(doomed)

    # -- watches -------------------------------------------------------------------

    def watch(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: str | None,
        fields: str | None,
        resource_version: str | None,
        loop: asyncio.AbstractEventLoop,
        send_initial_events: bool = False,
    ) -> Watcher:
        """Open a watch. Without a resourceVersion (or "0", or with sendInitialEvents) it starts
        with a synthetic ADDED per existing object; otherwise it replays the history after the
        given version (an ERROR 410 Expired event when that is compacted), then follows live."""
        match_labels: Matcher = label_selector(labels)
        match_fields: Matcher = field_selector(fields)
        watcher = Watcher(rt, namespace, match_labels, match_fields, loop)
        with self._lock:
            if send_initial_events or resource_version in (None, "", "0"):
                for obj in sorted(self._objects[rt].values(), key=lambda o: int(o["metadata"]["resourceVersion"])):
                    if watcher.matches(obj):
                        watcher.put({"type": "ADDED", "object": obj})
                if send_initial_events:
                    watcher.put(bookmark_event(rt, self._rv, initial_events_end=True))
            else:
                try:
                    since = int(str(resource_version))
                except ValueError:
                    raise errors.bad_request(f"invalid resourceVersion {resource_version!r}") from None
                if since < self._compacted:
                    watcher.put(expired_event(since, self._compacted + 1))
                    return watcher
                for change in self._history:
                    if change.rv > since:
                        watcher.offer(change)
            self._watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        with self._lock:
            self._watchers.discard(watcher)
