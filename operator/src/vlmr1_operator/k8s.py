"""The one place that talks to the Kubernetes API server.

A thin JSON client over the `kubernetes` package's ApiClient (which knows kubeconfig,
in-cluster credentials and TLS). Objects stay plain dicts, as the builders produce them.
Errors map to a few exception types: NotFound and Conflict are expected in a
level-triggered loop (`get` and `delete` absorb NotFound, `ensure` an AlreadyExists);
Transient ones are throttling, 5xx and dropped connections. Any ApiError out of a reconcile
makes the object due again after the retry backoff (handlers/base.py, resync.py); the type
only sets how loudly it is logged.

Every call is checked against permissions.RULES (an unlisted call is a bug, not an RBAC
surprise in production) and counted, so tests can assert that a no-op reconcile writes
nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from vlmr1_operator.permissions import allowed

WRITE_VERBS = frozenset({"create", "patch", "delete", "update"})
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


class ApiError(Exception):
    """A failed API call, with the server's status code and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


class NotFound(ApiError):  # noqa: N818 (the Kubernetes reason's name)
    pass


class Conflict(ApiError):  # noqa: N818
    """AlreadyExists on create, or a stale resourceVersion."""


class Invalid(ApiError):  # noqa: N818
    """The server rejected the object (422)."""


class Transient(ApiError):  # noqa: N818
    """Throttling, server errors, connection problems: the server's trouble, not a request's."""


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        """The resource's URL path; namespace None lists across all namespaces."""
        root = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        scope = f"/namespaces/{namespace}" if self.namespaced and namespace is not None else ""
        path = f"{root}{scope}/{self.plural}"
        if name:
            path += f"/{name}"
        if subresource:
            path += f"/{subresource}"
        return path


#: The kinds the operator reads and writes, by (apiVersion, kind).
RESOURCES: dict[tuple[str, str], Resource] = {
    ("v1", "Pod"): Resource("", "v1", "pods"),
    ("v1", "Service"): Resource("", "v1", "services"),
    ("v1", "ConfigMap"): Resource("", "v1", "configmaps"),
    ("apps/v1", "Deployment"): Resource("apps", "v1", "deployments"),
    ("policy/v1", "PodDisruptionBudget"): Resource("policy", "v1", "poddisruptionbudgets"),
    ("scheduling.volcano.sh/v1beta1", "PodGroup"): Resource("scheduling.volcano.sh", "v1beta1", "podgroups"),
    ("vlmr1.io/v1alpha1", "GRPOJob"): Resource("vlmr1.io", "v1alpha1", "grpojobs"),
    ("vlmr1.io/v1alpha1", "VLMService"): Resource("vlmr1.io", "v1alpha1", "vlmservices"),
}
EVENTS = Resource("", "v1", "events")
KOPF_PEERINGS = Resource("kopf.dev", "v1", "kopfpeerings")
CLUSTER_KOPF_PEERINGS = Resource("kopf.dev", "v1", "clusterkopfpeerings", namespaced=False)
PODS = RESOURCES[("v1", "Pod")]
DEPLOYMENTS = RESOURCES[("apps/v1", "Deployment")]
VLMSERVICES = RESOURCES[("vlmr1.io/v1alpha1", "VLMService")]
GRPOJOBS = RESOURCES[("vlmr1.io/v1alpha1", "GRPOJob")]


def resource_of(obj: dict[str, Any]) -> Resource:
    return RESOURCES[(obj["apiVersion"], obj["kind"])]


def _send(api: Any, method: str, path: str, headers: dict[str, str], body: Any) -> Any:
    """One request through the ApiClient's REST layer, which kubernetes 30 to 37 share.

    ApiClient's own entry points changed shape across those releases (call_api's arguments,
    param_serialize from 35 on), and the pins differ by extra: boto3's botocore holds
    python-dateutil below 3, which kubernetes 37 requires. The REST layer serialises the
    JSON body and sets up TLS and client certificates from the same configuration; the bearer
    token (a refreshed service-account token in cluster) comes from its auth settings.
    """
    configuration = api.configuration
    for auth in configuration.auth_settings().values():
        if auth.get("in") == "header" and auth.get("value"):
            headers[auth["key"]] = auth["value"]
    response = api.rest_client.request(method, configuration.host + path, headers=headers, body=body,
                                       _request_timeout=30)  # fmt: skip
    if callable(getattr(response, "read", None)):  # 35+ read the body lazily; before, it is read
        response.read()
    return response


class Kube:
    """JSON calls to the API server (sync: kopf runs sync handlers in its thread pool)."""

    def __init__(self, api_client: Any = None, on_call: Callable[[str, str], None] | None = None) -> None:
        if api_client is None:
            api_client = _default_client()
        self.api = api_client
        self.calls: Counter[tuple[str, str]] = Counter()
        self.on_call = on_call

    @property
    def writes(self) -> int:
        """Write calls made so far (create, patch, delete)."""
        return sum(n for (verb, _), n in self.calls.items() if verb in WRITE_VERBS)

    def _call(
        self,
        verb: str,
        resource: Resource,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        query: dict[str, str] | None = None,
        subresource: str | None = None,
    ) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        name = resource.plural + (f"/{subresource}" if subresource else "")
        if not allowed(resource.group, name, verb):
            raise PermissionError(f"{verb} {resource.group}/{name} is not in permissions.RULES")
        self.calls[(verb, name)] += 1
        if self.on_call is not None:
            self.on_call(verb, name)
        full = path + (f"?{urlencode(query)}" if query else "")
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            response = _send(self.api, method, full, headers, body)
        except ApiException as exc:
            raise _error(exc.status or 0, exc.reason or "", exc.body or "") from exc
        except (OSError, HTTPError) as exc:  # connection refused or reset, DNS, timeouts, retries spent
            raise Transient(0, "ConnectionError", str(exc)) from exc
        if response.status >= 400:
            raise _error(response.status, response.reason or "", response.data.decode("utf-8", "replace"))
        return json.loads(response.data) if response.data else None

    def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self._call("get", resource, "GET", resource.path(namespace, name))
        except NotFound:
            return None
        return obj

    def list(self, resource: Resource, namespace: str | None, labels: dict[str, str]) -> list[dict[str, Any]]:
        """Objects matching `labels` in a namespace (None: every namespace)."""
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        query = {"labelSelector": selector} if selector else None
        result = self._call("list", resource, "GET", resource.path(namespace), query=query)
        items: list[dict[str, Any]] = result.get("items", []) if result else []
        return items

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        res, meta = resource_of(obj), obj["metadata"]
        created: dict[str, Any] = self._call("create", res, "POST", res.path(meta["namespace"]), body=obj)
        return created

    def patch(self, resource: Resource, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        patched: dict[str, Any] = self._call(
            "patch", resource, "PATCH", resource.path(namespace, name), body=patch,
            content_type="application/merge-patch+json",
        )  # fmt: skip
        return patched

    def scale(self, resource: Resource, namespace: str, name: str, replicas: int) -> None:
        """Set the desired replicas through the scale subresource (what kubectl scale does)."""
        self._call(
            "patch", resource, "PATCH", resource.path(namespace, name, "scale"), body={"spec": {"replicas": replicas}},
            content_type="application/merge-patch+json", subresource="scale",
        )  # fmt: skip

    def patch_status(self, resource: Resource, namespace: str, name: str, status: dict[str, Any]) -> None:
        self._call(
            "patch", resource, "PATCH", resource.path(namespace, name, "status"), body={"status": status},
            content_type="application/merge-patch+json", subresource="status",
        )  # fmt: skip

    def delete(self, resource: Resource, namespace: str, name: str) -> bool:
        """Delete (children go with their owner: background propagation); False if already gone."""
        try:
            self._call(
                "delete", resource, "DELETE", resource.path(namespace, name),
                body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
            )  # fmt: skip
        except NotFound:
            return False
        return True

    def post_event(self, owner: dict[str, Any], type_: str, reason: str, message: str, now: str) -> None:
        """A core/v1 Event about `owner` (what kubectl describe shows).

        Posted here rather than with kopf.event, which needs kopf's context and so fails
        from the resync thread.
        """
        meta = owner["metadata"]
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"],
                "namespace": meta["namespace"], "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "vlmr1-operator"},
            "reportingComponent": "vlmr1-operator",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }  # fmt: skip
        self._call("create", EVENTS, "POST", EVENTS.path(meta["namespace"]), body=event)

    def ensure(self, obj: dict[str, Any]) -> bool:
        """Create `obj`, or patch it where the live object differs; True if anything was written.

        Only the fields the builder sets are compared, so fields the server or other
        controllers add (status, defaults, clusterIP) never cause a write.
        """
        res, meta = resource_of(obj), obj["metadata"]
        live = self.get(res, meta["namespace"], meta["name"])
        if live is None:
            try:
                self.create(obj)
            except Conflict:
                return False  # created meanwhile (a concurrent reconcile); the next pass compares
            return True
        if obj["kind"] == "Pod":
            return False  # pods are immutable here: a changed pod means a gang restart, not a patch
        desired = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status")}
        if contains(live, desired):
            return False
        self.patch(res, meta["namespace"], meta["name"], desired)
        return True


def contains(live: Any, desired: Any) -> bool:
    """Whether every field of `desired` is in `live` with the same value (maps recursively)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and contains(live[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(live) == len(desired) and all(map(contains, live, desired))
    return bool(live == desired) or (isinstance(desired, str) and str(live) == desired)


def _error(status: int, reason: str, body: str) -> ApiError:
    try:
        message = json.loads(body).get("message", body)
    except (ValueError, AttributeError):
        message = body
    if status == 404:
        return NotFound(status, reason, message)
    if status == 409:
        return Conflict(status, reason, message)
    if status == 422:
        return Invalid(status, reason, message)
    if status in TRANSIENT_STATUS or status == 0:
        return Transient(status, reason, message)
    return ApiError(status, reason, message)


def _default_client() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call, unused-ignore]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call, unused-ignore]
    return client.ApiClient()
