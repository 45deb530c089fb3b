"""HTTP handlers of the simulated API (aiohttp), on top of :class:`~.store.Store`.

URL shapes served, for every type in resources.RESOURCE_TYPES::

    /api/v1/{plural}                                   cluster-scoped collection, or all namespaces
    /api/v1/{plural}/{name}[/status]                   cluster-scoped object
    /api/v1/namespaces/{ns}/{plural}[/{name}[/status]] namespaced
    /apis/{group}/{version}/...                        the same below a group

Verbs: GET (get, list, ``?watch=1`` watch, ``Accept: ...;as=Table`` for kubectl), POST (create),
PUT (replace), PATCH (merge, strategic merge, JSON patch, simplified server-side apply), DELETE
(one object or a collection). ``dryRun`` is honoured. Bodies are JSON (or YAML for apply);
Kubernetes protobuf is accepted only for creating a Namespace or a ConfigMap (``kubectl create
namespace|configmap`` send it) and answered 415 elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import yaml
from aiohttp import web

from vlmr1_devtools.devcluster.errors import StatusError, bad_request
from vlmr1_devtools.devcluster.resources import ResourceType, table, wants_table
from vlmr1_devtools.devcluster.store import Store
from vlmr1_devtools.devcluster.watch import bookmark_event

#: Watches without timeoutSeconds end after this long (the real server picks 30-60 minutes).
DEFAULT_WATCH_TIMEOUT = 1800.0
#: With allowWatchBookmarks, an idle watch gets a BOOKMARK this often.
BOOKMARK_INTERVAL = 30.0


def error_response(exc: StatusError) -> web.Response:
    return web.json_response(exc.status(), status=exc.code)


def _truthy(value: str | None) -> bool:
    return value in ("1", "true", "True")


def _protobuf_fields(buf: bytes) -> dict[int, list[bytes]]:
    """Length-delimited fields of one protobuf message (others skipped): just enough to read a
    name out of the protobuf that typed clients (``kubectl create namespace``) send."""
    fields: dict[int, list[bytes]] = {}
    i = 0

    def varint() -> int:
        nonlocal i
        shift = value = 0
        while True:
            byte = buf[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while i < len(buf):
        key = varint()
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            varint()
        elif wire_type == 1:
            i += 8
        elif wire_type == 5:
            i += 4
        elif wire_type == 2:
            size = varint()
            fields.setdefault(number, []).append(buf[i : i + size])
            i += size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
    return fields


def _string_map(entries: list[bytes], as_text: bool = True) -> dict[str, Any]:
    """A protobuf map<string, string|bytes>: repeated entries {1: key, 2: value}."""
    out: dict[str, Any] = {}
    for entry in entries:
        fields = _protobuf_fields(entry)
        key = fields.get(1, [b""])[0].decode()
        value = fields.get(2, [b""])[0]
        out[key] = value.decode() if as_text else base64.b64encode(value).decode()
    return out


def object_from_protobuf(body: bytes, kind: str) -> dict[str, Any]:
    """A Namespace or ConfigMap sent as Kubernetes protobuf (what typed clients such as
    ``kubectl create namespace|configmap`` send), with the fields those commands set:
    ``"k8s\0" + runtime.Unknown{2: raw}``, raw = {1: ObjectMeta{1: name, 2: generateName,
    3: namespace, 11: labels, 12: annotations}, ConfigMap: 2: data, 3: binaryData}."""
    try:
        raw = _protobuf_fields(body[4:])[2][0]
        top = _protobuf_fields(raw)
        meta_fields = _protobuf_fields(top.get(1, [b""])[0])
        meta: dict[str, Any] = {}
        for number, field in ((1, "name"), (2, "generateName"), (3, "namespace")):
            if number in meta_fields:
                meta[field] = meta_fields[number][0].decode()
        for number, field in ((11, "labels"), (12, "annotations")):
            if number in meta_fields:
                meta[field] = _string_map(meta_fields[number])
        obj: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": meta}
        if kind == "ConfigMap":
            if 2 in top:
                obj["data"] = _string_map(top[2])
            if 3 in top:
                obj["binaryData"] = _string_map(top[3], as_text=False)
    except (IndexError, KeyError, ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"cannot read the protobuf {kind}: {exc}") from None
    return obj


class SimulatedApi:
    """Routes requests for the simulated resource types to the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def resolve(self, group: str, version: str, tail: str) -> tuple[ResourceType, str | None, str | None, str | None]:
        """(type, namespace, name, subresource) of a path below ``/api/v1`` or ``/apis/g/v``."""
        parts = [p for p in tail.split("/") if p]
        types = {rt.plural: rt for rt in self.store.types if rt.group_version == (group, version)}
        if len(parts) >= 3 and parts[0] == "namespaces" and parts[2] in types and types[parts[2]].namespaced:
            rt, namespace, rest = types[parts[2]], parts[1], parts[3:]
        elif parts and parts[0] in types:
            rt, namespace, rest = types[parts[0]], None, parts[1:]
            if rt.namespaced and rest:  # /api/v1/pods/x is not a thing
                raise StatusError(404, "NotFound", "the server could not find the requested resource")
        else:
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        if len(rest) > 2 or (len(rest) == 2 and not (rest[1] == "status" and rt.status_subresource)):
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        return rt, namespace, (rest[0] if rest else None), (rest[1] if len(rest) == 2 else None)

    async def handle(self, request: web.Request, group: str, version: str, tail: str) -> web.StreamResponse:
        try:
            rt, namespace, name, sub = self.resolve(group, version, tail)
            return await self._dispatch(request, rt, namespace, name, sub)
        except StatusError as exc:
            return error_response(exc)

    async def _body(self, request: web.Request, rt: ResourceType) -> Any:
        raw = await request.read()
        content_type = request.content_type
        if "protobuf" in content_type:
            if rt.kind in ("Namespace", "ConfigMap") and request.method == "POST":
                return object_from_protobuf(raw, rt.kind)
            raise StatusError(415, "UnsupportedMediaType", f"{content_type} is not supported here; send JSON")
        try:
            if content_type == "application/apply-patch+yaml":
                return yaml.safe_load(raw) if raw else {}
            return json.loads(raw) if raw else {}
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"cannot decode the request body: {exc}") from None

    async def _dispatch(
        self, request: web.Request, rt: ResourceType, namespace: str | None, name: str | None, sub: str | None
    ) -> web.StreamResponse:
        q = request.query
        dry_run = bool(q.get("dryRun"))
        method = request.method
        if method == "GET" and name is None:
            if _truthy(q.get("watch")):
                return await self._watch(request, rt, namespace)
            items, rv = self.store.list_objects(rt, namespace, q.get("labelSelector"), q.get("fieldSelector"))
            if wants_table(request.headers.get("Accept", "")):
                return web.json_response(table(rt, items, rv))
            return web.json_response(
                {
                    "kind": f"{rt.kind}List",
                    "apiVersion": rt.api_version,
                    "metadata": {"resourceVersion": rv},
                    "items": items,
                }
            )
        if method == "GET":
            assert name is not None
            obj = self.store.get(rt, namespace, name)
            if wants_table(request.headers.get("Accept", "")):
                return web.json_response(table(rt, [obj], obj["metadata"]["resourceVersion"]))
            return web.json_response(obj)
        if method == "POST" and name is None:
            return web.json_response(
                self.store.create(rt, namespace, await self._body(request, rt), dry_run), status=201
            )
        if method == "PUT" and name is not None:
            body = await self._body(request, rt)
            return web.json_response(self.store.replace(rt, namespace, name, body, sub, dry_run))
        if method == "PATCH" and name is not None:
            body = await self._body(request, rt)
            obj, created = self.store.patch(rt, namespace, name, request.content_type, body, sub, dry_run)
            return web.json_response(obj, status=201 if created else 200)
        if method == "DELETE" and name is None:
            deleted = self.store.delete_collection(rt, namespace, q.get("labelSelector"), q.get("fieldSelector"))
            return web.json_response(
                {"kind": f"{rt.kind}List", "apiVersion": rt.api_version, "metadata": {}, "items": deleted}
            )
        if method == "DELETE" and name is not None:
            return await self._delete(request, rt, namespace, name, dry_run)
        raise StatusError(405, "MethodNotAllowed", f"{method} is not supported on {request.path}")

    async def _delete(
        self, request: web.Request, rt: ResourceType, namespace: str | None, name: str, dry_run: bool
    ) -> web.Response:
        options = await self._body(request, rt) if request.can_read_body else {}
        if not isinstance(options, dict):
            raise bad_request("DeleteOptions must be a JSON object")
        propagation = request.query.get("propagationPolicy") or options.get("propagationPolicy")
        dry_run = dry_run or bool(options.get("dryRun"))
        obj, gone = self.store.delete(rt, namespace, name, propagation, options.get("preconditions"), dry_run)
        if not gone or rt.kind in ("Pod", "Namespace"):
            return web.json_response(obj)  # what the real server answers for these (or when deferred)
        return web.json_response(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "group": rt.group, "kind": rt.plural, "uid": obj["metadata"]["uid"]},
            }
        )

    async def _watch(self, request: web.Request, rt: ResourceType, namespace: str | None) -> web.StreamResponse:
        q = request.query
        loop = asyncio.get_running_loop()
        watcher = self.store.watch(
            rt,
            namespace,
            q.get("labelSelector"),
            q.get("fieldSelector"),
            q.get("resourceVersion"),
            loop,
            send_initial_events=q.get("sendInitialEvents") == "true",
        )
        as_table = wants_table(request.headers.get("Accept", ""))
        bookmarks = _truthy(q.get("allowWatchBookmarks"))
        try:
            try:
                timeout = float(q.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
            except ValueError:
                raise bad_request(f"invalid timeoutSeconds {q.get('timeoutSeconds')!r}") from None
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            deadline = loop.time() + timeout
            while (remaining := deadline - loop.time()) > 0:
                wait = min(remaining, BOOKMARK_INTERVAL) if bookmarks else remaining
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), wait)
                except TimeoutError:
                    if bookmarks and deadline - loop.time() > 0:
                        event = bookmark_event(rt, int(self.store.resource_version))
                    else:
                        break
                if as_table and event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    obj = event["object"]
                    event = {"type": event["type"], "object": table(rt, [obj], obj["metadata"]["resourceVersion"])}
                await resp.write(json.dumps(event).encode() + b"\n")
                if event["type"] == "ERROR":
                    break
            await resp.write_eof()
            return resp
        finally:
            self.store.unwatch(watcher)
