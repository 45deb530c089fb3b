"""The front proxy: one aiohttp process in front of the real apiextensions-apiserver.

    kubectl / kopf --http--> proxy --https + client cert--> apiextensions-apiserver --> etcd
                               |
                               +--> simulated core API (store.py, in this process's memory)

Routing: ``/api/v1/...`` and the simulated groups (resources.SIMULATED_GROUPS) go to the
simulated API; everything else (CRDs, custom resources such as vlmr1.io and kopf.dev,
``/version``, ``/readyz``) is forwarded unchanged, watches streamed chunk by chunk.

Discovery the standalone server cannot give is served here: ``/api``, ``/api/v1``, ``/apis``
(the simulated groups plus the groups of established CRDs, computed per request),
``/apis/<simulated group>[/<version>]``, and OpenAPI v3 (openapi.py): documents built from the
established CRDs, which the standalone server does not publish (``kubectl explain``), and stubs
for the simulated groups so kubectl delegates field validation to the server. Discovery is
answered in the legacy JSON form whatever the Accept header says; client-go falls back from
the aggregated form on its own.

Garbage collection across the two servers: dependents in the simulated store may be owned by
custom resources on the real server. The proxy checks those owners (a GET of each distinct
owner, confirming its uid) every GC_INTERVAL seconds and at once after every DELETE it forwards,
and tells the store which are gone. Polling with a confirming GET, rather than a watch, cannot
miss a deletion (whoever made it, however the watch fared) and cannot collect a dependent whose
owner was created a moment ago. A CRD that is deleted takes its custom resources with it; their
dependents are then kept (the owner kind is unknown), a documented gap.

The proxy is plain HTTP without authentication: anything on this machine that can reach the
port acts as ``system:masters``. It binds 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from vlmr1_devtools.devcluster import openapi
from vlmr1_devtools.devcluster.api import SimulatedApi, error_response
from vlmr1_devtools.devcluster.errors import StatusError
from vlmr1_devtools.devcluster.resources import SIMULATED_GROUPS, api_group, api_resource_list, by_group_version
from vlmr1_devtools.devcluster.store import Store

HOST = "127.0.0.1"
GC_INTERVAL = 1.0
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}


class FrontProxy:
    """The aiohttp application: simulated API, discovery, forwarding and the GC loop."""

    def __init__(self, upstream: str, ssl_context: ssl.SSLContext, store: Store | None = None) -> None:
        self.upstream = upstream
        self.ssl_context = ssl_context
        self.store = store or Store()
        self.api = SimulatedApi(self.store)
        self.session: aiohttp.ClientSession | None = None
        self._gc_wakeup = asyncio.Event()
        self._object_meta: dict[str, Any] | None = None

    # -- upstream ----------------------------------------------------------------

    async def upstream_json(self, path: str) -> tuple[int, Any]:
        assert self.session is not None
        async with self.session.get(URL(self.upstream + path, encoded=True)) as r:
            body = await r.read()
            try:
                return r.status, json.loads(body)
            except ValueError:
                return r.status, None

    async def forward(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP and k.lower() != "authorization"
        )
        # aiohttp would otherwise add its own Accept-Encoding and hand gzip to a client that
        # never asked for it (bodies pass through undecoded).
        headers.setdefault("Accept-Encoding", "identity")
        body = await request.read() if request.body_exists else None
        if body and "Content-Type" not in headers:
            # Some clients (the Python client's custom-object calls) send JSON without saying
            # so; aiohttp would label it application/octet-stream, which the server refuses.
            headers["Content-Type"] = "application/json"
        async with self.session.request(
            request.method,
            URL(self.upstream + request.raw_path, encoded=True),
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as up:
            resp = web.StreamResponse(
                status=up.status,
                reason=up.reason,
                headers={k: v for k, v in up.headers.items() if k.lower() not in _HOP_BY_HOP},
            )
            if up.content_length is not None:
                resp.content_length = up.content_length
            else:
                resp.enable_chunked_encoding()  # watches: pass each chunk through as it comes
            await resp.prepare(request)
            try:
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
            except (ConnectionResetError, aiohttp.ClientConnectionError):
                pass  # the client went away (watch closed) or upstream closed
            if request.method == "DELETE" and up.status < 300:
                self._gc_wakeup.set()  # a custom resource may be gone: check its dependents now
            return resp

    # -- discovery ---------------------------------------------------------------

    async def api_versions(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}],
            }
        )

    async def core_resources(self, request: web.Request) -> web.Response:
        return web.json_response(api_resource_list("", "v1"))

    async def apis(self, request: web.Request) -> web.Response:
        _, crds = await self.upstream_json("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
        names = sorted({c["spec"]["group"] for c in (crds or {}).get("items", [])} - SIMULATED_GROUPS)
        # /apis/<group> is served only once a CRD is Established, so this doubles as a filter.
        found = await asyncio.gather(*(self.upstream_json(f"/apis/{g}") for g in ["apiextensions.k8s.io", *names]))
        groups = [g for _, g in found if g and g.get("kind") == "APIGroup"]
        groups += [api_group(g) for g in sorted(SIMULATED_GROUPS)]
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

    async def group_routes(self, request: web.Request) -> web.StreamResponse:
        """``/apis/{group}[/{version}[/...]]``: simulated groups here, the rest upstream."""
        group = request.match_info["group"]
        if group not in SIMULATED_GROUPS:
            return await self.forward(request)
        version, _, tail = request.match_info.get("rest", "").strip("/").partition("/")
        if not version:
            return web.json_response(api_group(group))
        if (group, version) not in by_group_version():
            return error_response(StatusError(404, "NotFound", "the server could not find the requested resource"))
        if not tail:
            return web.json_response(api_resource_list(group, version))
        return await self.api.handle(request, group, version, tail)

    async def core_routes(self, request: web.Request) -> web.StreamResponse:
        return await self.api.handle(request, "", "v1", request.match_info["tail"])

    # -- OpenAPI v3 (openapi.py) --------------------------------------------------

    async def _meta_schemas(self) -> dict[str, Any]:
        """ObjectMeta and the schemas it references, from the real server (fetched once: they
        are compiled into it). Empty while the server cannot say; asked again next time."""
        if self._object_meta is None:
            status, doc = await self.upstream_json(openapi.META_SOURCE)
            schemas = (doc or {}).get("components", {}).get("schemas", {}) if status == 200 else {}
            found = openapi.referenced_schemas(schemas, openapi.OBJECT_META)
            if not found:
                return {}
            self._object_meta = found
        return self._object_meta

    async def openapi_documents(self) -> dict[str, bytes]:
        """Every document served here rather than upstream, encoded, by ``/openapi/v3`` key:
        the simulated stubs and one per group/version of the established CRDs (built per
        request, like /apis, so a CRD shows up as soon as it is established)."""
        status, crds = await self.upstream_json("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
        items = (crds or {}).get("items", []) if status == 200 else []
        built = openapi.crd_documents(items, await self._meta_schemas())
        return {**{key: openapi.encode(doc) for key, doc in built.items()}, **openapi.simulated_documents()}

    async def openapi_root(self, request: web.Request) -> web.Response:
        _, root = await self.upstream_json("/openapi/v3")
        root = root if isinstance(root, dict) and "paths" in root else {"paths": {}}
        documents = await self.openapi_documents()
        root["paths"].update({key: openapi.index_entry(key, body) for key, body in documents.items()})
        return web.json_response(root)

    async def openapi_doc(self, request: web.Request) -> web.StreamResponse:
        body = (await self.openapi_documents()).get(request.match_info["tail"].strip("/"))
        if body is None:
            return await self.forward(request)  # the server's own: apiextensions.k8s.io, version
        # Whatever hash was asked for, this is the current document; no-cache so that no client
        # keeps it under a hash that named an older one.
        return web.Response(body=body, content_type="application/json", headers={"Cache-Control": "no-cache, private"})

    # -- garbage collection --------------------------------------------------------

    async def _owner_index(self) -> dict[tuple[str, str], tuple[str, bool]]:
        """(group, kind) -> (plural, namespaced) of every CRD on the real server."""
        status, crds = await self.upstream_json("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
        if status != 200 or not crds:
            return {}
        index: dict[tuple[str, str], tuple[str, bool]] = {}
        for crd in crds.get("items", []):
            spec = crd["spec"]
            index[(spec["group"], spec["names"]["kind"])] = (spec["names"]["plural"], spec["scope"] == "Namespaced")
        return index

    async def collect_garbage(self) -> None:
        """Tell the store which of its external owners are gone (confirmed by a GET), then sweep."""
        owners = self.store.external_owners()
        index = await self._owner_index() if owners else {}
        for api_version, kind, namespace, name, uid in owners:
            entry = index.get((api_version.rpartition("/")[0], kind))
            if entry is None:
                continue  # not a custom resource we know: assume alive
            plural, namespaced = entry
            scope = f"namespaces/{namespace}/" if namespaced else ""
            status, body = await self.upstream_json(f"/apis/{api_version}/{scope}{plural}/{name}")
            if status == 404 or (status == 200 and (body or {}).get("metadata", {}).get("uid") != uid):
                self.store.owner_gone(uid)
        self.store.sweep()

    async def gc_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._gc_wakeup.wait(), GC_INTERVAL)
            self._gc_wakeup.clear()
            try:
                await self.collect_garbage()
            except (aiohttp.ClientError, OSError, ValueError) as exc:  # upstream restarting: next round
                print(f"garbage collection round failed: {exc!r}", flush=True)

    # -- application ------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_get("/api", self.api_versions)
        app.router.add_get("/api/", self.api_versions)
        app.router.add_get("/api/v1", self.core_resources)
        app.router.add_get("/api/v1/", self.core_resources)
        app.router.add_route("*", "/api/v1/{tail:.*}", self.core_routes)
        app.router.add_get("/apis", self.apis)
        app.router.add_get("/apis/", self.apis)
        app.router.add_route("*", "/apis/{group}", self.group_routes)
        app.router.add_route("*", "/apis/{group}/{rest:.*}", self.group_routes)
        app.router.add_get("/openapi/v3", self.openapi_root)
        app.router.add_get("/openapi/v3/{tail:.*}", self.openapi_doc)
        app.router.add_route("*", "/{tail:.*}", self.forward)
        return app

    async def serve(self, port: int) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.ssl_context, limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,  # pass gzip through untouched
        )
        # handler_cancellation: a client that hangs up ends its watch (and unregisters it) at once.
        runner = web.AppRunner(self.app(), access_log=None, handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, HOST, port).start()
        gc_task = asyncio.create_task(self.gc_loop())
        print(f"proxy on http://{HOST}:{port} -> {self.upstream}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            gc_task.cancel()
            await runner.cleanup()
            await self.session.close()


def run_proxy(port: int, upstream: str, ca: str, cert: str, key: str) -> None:
    """Run the proxy in this process until SIGTERM (nothing to flush: state is throwaway)."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # don't let open watches delay exit
    asyncio.run(FrontProxy(upstream, ctx).serve(port))
