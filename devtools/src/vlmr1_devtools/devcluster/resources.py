"""The resource types the simulated API serves, and what the proxy says about them: discovery
documents and Table rows (what ``kubectl get`` prints); their OpenAPI stubs are in openapi.py.

The CRDs and custom resources are not here: the real apiextensions-apiserver serves those.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class ResourceType:
    """One served resource (``pods``), with what discovery and the store need to know."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    status_subresource: bool = False
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def group_version(self) -> tuple[str, str]:
        return (self.group, self.version)

    def describe(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCE_TYPES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", namespaced=False, short_names=("ns",), status_subresource=True),
    ResourceType("", "v1", "pods", "Pod", short_names=("po",), status_subresource=True, categories=("all",)),
    ResourceType("", "v1", "services", "Service", short_names=("svc",), status_subresource=True, categories=("all",)),
    ResourceType("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    ResourceType("", "v1", "events", "Event", short_names=("ev",)),
    ResourceType("events.k8s.io", "v1", "events", "Event", short_names=("ev",)),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease"),
    ResourceType(
        "apps", "v1", "deployments", "Deployment", short_names=("deploy",), status_subresource=True, categories=("all",)
    ),
    ResourceType(
        "policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short_names=("pdb",), status_subresource=True
    ),
    ResourceType(
        "scheduling.volcano.sh",
        "v1beta1",
        "podgroups",
        "PodGroup",
        short_names=("pg", "podgroup-v1beta1"),
        status_subresource=True,
    ),
)


def by_group_version() -> dict[tuple[str, str], list[ResourceType]]:
    out: dict[tuple[str, str], list[ResourceType]] = {}
    for rt in RESOURCE_TYPES:
        out.setdefault(rt.group_version, []).append(rt)
    return out


SIMULATED_GROUPS: frozenset[str] = frozenset(rt.group for rt in RESOURCE_TYPES if rt.group)


# --------------------------------------------------------------------------- discovery


def api_resource_list(group: str, version: str) -> dict[str, Any]:
    """The legacy discovery document of one group/version (``/api/v1``, ``/apis/g/v``)."""
    resources: list[dict[str, Any]] = []
    for rt in by_group_version().get((group, version), []):
        entry: dict[str, Any] = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": VERBS if rt.plural != "namespaces" else [v for v in VERBS if v != "deletecollection"],
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        resources.append(entry)
        if rt.status_subresource:
            resources.append(
                {
                    "name": f"{rt.plural}/status",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}


def api_group(group: str) -> dict[str, Any]:
    """The discovery entry of one simulated group (``/apis/<group>``, and an item of ``/apis``)."""
    versions = sorted({rt.version for rt in RESOURCE_TYPES if rt.group == group})
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": entries, "preferredVersion": entries[0]}


# --------------------------------------------------------------------------- tables (kubectl get)


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def human_age(timestamp: str | None, now: dt.datetime | None = None) -> str:
    """Like kubectl's AGE column (``45s``, ``3m12s``, ``5h``, ``2d``)."""
    created = parse_time(timestamp)
    if created is None:
        return "<unknown>"
    seconds = max(0, int(((now or dt.datetime.now(dt.UTC)) - created).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    return f"{hours}h" if hours < 48 else f"{hours // 24}d"


def _columns(rt: ResourceType) -> list[tuple[str, str]]:
    extra = {
        "Pod": [("Ready", "string"), ("Status", "string"), ("Restarts", "integer")],
        "Service": [("Type", "string"), ("Cluster-IP", "string"), ("Ports", "string")],
        "ConfigMap": [("Data", "integer")],
        "PodGroup": [("Status", "string"), ("MinMember", "integer")],
        "Event": [("Type", "string"), ("Reason", "string"), ("Message", "string")],
        "Namespace": [("Status", "string")],
        "Lease": [("Holder", "string")],
    }.get(rt.kind, [])
    return [("Name", "string"), *extra, ("Age", "string")]


def _cells(rt: ResourceType, obj: dict[str, Any]) -> list[Any]:
    meta, spec, status = obj.get("metadata", {}), obj.get("spec") or {}, obj.get("status") or {}
    extra: list[Any] = []
    if rt.kind == "Pod":
        statuses = status.get("containerStatuses") or []
        ready = sum(1 for s in statuses if s.get("ready"))
        phase = "Terminating" if meta.get("deletionTimestamp") else status.get("phase", "Pending")
        restarts = sum(int(s.get("restartCount", 0)) for s in statuses)
        extra = [f"{ready}/{len(spec.get('containers') or [])}", phase, restarts]
    elif rt.kind == "Service":
        ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
        extra = [spec.get("type", "ClusterIP"), spec.get("clusterIP", ""), ports or "<none>"]
    elif rt.kind == "ConfigMap":
        extra = [len(obj.get("data") or {}) + len(obj.get("binaryData") or {})]
    elif rt.kind == "PodGroup":
        extra = [status.get("phase", ""), spec.get("minMember", 0)]
    elif rt.kind == "Event":
        extra = [obj.get("type", ""), obj.get("reason", ""), obj.get("message") or obj.get("note", "")]
    elif rt.kind == "Namespace":
        extra = [status.get("phase", "Active")]
    elif rt.kind == "Lease":
        extra = [spec.get("holderIdentity", "")]
    return [meta.get("name", ""), *extra, human_age(meta.get("creationTimestamp"))]


def table(rt: ResourceType, items: list[dict[str, Any]], resource_version: str = "") -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table (server-side printing) with each row's object metadata."""
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {"name": name, "type": typ, "format": "name" if name == "Name" else "", "description": name, "priority": 0}
            for name, typ in _columns(rt)
        ],
        "rows": [
            {
                "cells": _cells(rt, obj),
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj.get("metadata", {}),
                },
            }
            for obj in items
        ],
    }


def wants_table(accept: str) -> bool:
    """Does the client ask for server-side printing (``Accept: application/json;as=Table;...``)?"""
    return "as=Table" in accept
