"""Names, labels, owner references and merging shared by the builders."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import yaml

from vlmr1_core.accelerators import DEVICE_RESOURCE, ServingAccelerator
from vlmr1_core.api.common import GROUP_VERSION, SecretRef
from vlmr1_core.apimodel import SecretKeyRef

Manifest = dict[str, Any]

MANAGED_BY = "vlmr1-operator"
LABEL_JOB = "vlmr1.io/job-name"
LABEL_INDEX = "vlmr1.io/node-index"
LABEL_ROLE = "vlmr1.io/role"
LABEL_RESTART = "vlmr1.io/restart"


def labels(instance: str, component: str, **extra: str) -> dict[str, str]:
    """The app.kubernetes.io labels every child carries, plus vlmr1.io ones."""
    return {
        "app.kubernetes.io/name": "vlmr1",
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        **extra,
    }


def owner_reference(kind: str, name: str, uid: str) -> dict[str, Any]:
    """Makes the child part of its owner: deleted with it, watched through it."""
    return {
        "apiVersion": GROUP_VERSION,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(name: str, namespace: str, labels: dict[str, str], owner: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": [owner]}


def merge(base: Any, override: Any) -> Any:
    """Merge a user's partial object over a generated one.

    Maps merge key by key; lists of maps that all carry `name` (containers, volumes,
    env) merge item by item on that name, new names appended; anything else in the
    override replaces the base. Neither argument is modified.
    """
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if _named_list(base) and _named_list(override):
        out_list = list(base)
        index = {item["name"]: i for i, item in enumerate(out_list)}
        for item in override:
            if item["name"] in index:
                out_list[index[item["name"]]] = merge(out_list[index[item["name"]]], item)
            else:
                out_list.append(copy.deepcopy(item))
        return out_list
    return copy.deepcopy(override)


def _named_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(i, dict) and "name" in i for i in value)


def container_resources(
    cpu: str | int | None,
    memory: str | int | None,
    accelerator: ServingAccelerator,
    devices: int,
    device_resources: Mapping[ServingAccelerator, str] = DEVICE_RESOURCE,
) -> dict[str, Any]:
    """Requests equal to limits (Guaranteed QoS: a training gang or a serving replica is
    never the first evicted), with the accelerator's devices under the resource name the
    cluster's device plugin uses (``device_resources``, from the operator settings)."""
    amounts: dict[str, str] = {}
    if cpu is not None:
        amounts["cpu"] = quantity(cpu)
    if memory is not None:
        amounts["memory"] = quantity(memory)
    resource = device_resources.get(accelerator)  # none on cpu
    if devices and resource:
        amounts[resource] = str(devices)
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else {}


def secret_env(
    hub_token: SecretKeyRef | None, *whole: SecretRef | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Container ``env`` and ``envFrom`` entries for a spec's secrets: the hub token as HF_TOKEN,
    each whole Secret (object store, trackers) as environment variables."""
    env = []
    if hub_token is not None:
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": hub_token.name, "key": hub_token.key}}})
    return env, [{"secretRef": {"name": ref.name}} for ref in whole if ref is not None]


def quantity(value: str | int) -> str:
    """Quantities as strings, as the API server returns them (so a re-read compares equal)."""
    return str(value)


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (an embedded config file) as readable literal blocks."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_representer)


def to_yaml(objs: list[Manifest]) -> str:
    """Manifests as one YAML stream, in order, keys in builder order."""
    return yaml.dump_all(objs, Dumper=_BlockDumper, sort_keys=False, width=120)
