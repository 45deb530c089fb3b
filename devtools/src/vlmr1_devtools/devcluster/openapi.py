"""The OpenAPI v3 documents the front proxy serves: what ``kubectl explain`` and kubectl's
field-validation check read.

kubectl fetches the index ``/openapi/v3`` (a path per group/version, each with a
``serverRelativeURL`` carrying a content hash), then the one document it needs. ``explain``
finds the resource's kind in that document through the ``x-kubernetes-group-version-kind`` of an
operation on the resource's path, then the schema carrying the same extension, and follows its
``$ref``s within the document.

* Custom resources. The standalone apiextensions-apiserver serves no OpenAPI for them: its
  controller that publishes CRD schemas starts only when the server also has an OpenAPI v2
  config, which kube-apiserver sets and the standalone server's options leave unset (it answers
  ``/openapi/v3/apis/<crd group>/<version>`` with an empty 200). So the documents are built here
  from the established CRDs, shaped like that controller's: the version's ``openAPIV3Schema`` as
  written, ``metadata`` as ObjectMeta, and the ObjectMeta schemas copied from the server's own
  ``apiextensions.k8s.io/v1`` document (so their descriptions are the real ones).
* The simulated group/versions: stubs with a PATCH operation per kind and no schemas; they exist
  so kubectl leaves field validation to the server (see ``simulated_document``).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from vlmr1_devtools.devcluster.resources import by_group_version

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
SCHEMA_REF_PREFIX = "#/components/schemas/"
#: The document whose components hold ObjectMeta on the standalone server.
META_SOURCE = "/openapi/v3/apis/apiextensions.k8s.io/v1"
# kube-apiserver's wording for a custom resource's metadata property.
METADATA_DESCRIPTION = (
    "Standard object's metadata. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
_PATCH_PARAMETERS = ("fieldValidation", "fieldManager", "dryRun")


def index_key(group: str, version: str) -> str:
    """The key of a group/version in ``/openapi/v3`` (``api/v1``, ``apis/<group>/<version>``)."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def encode(document: Mapping[str, Any]) -> bytes:
    """The bytes served for a document; sorted keys so its hash changes only with its content."""
    return json.dumps(document, sort_keys=True).encode()


def index_entry(key: str, body: bytes) -> dict[str, str]:
    """An ``/openapi/v3`` entry, hash-addressed like the real server's (sha512, upper-case hex)."""
    return {"serverRelativeURL": f"/openapi/v3/{key}?hash={hashlib.sha512(body).hexdigest().upper()}"}


def model_name(group: str, version: str, kind: str) -> str:
    """The schema name the real server gives a custom resource: the group's labels reversed
    (``vlmr1.io`` -> ``io.vlmr1.v1alpha1.GRPOJob``)."""
    return ".".join([*reversed(group.split(".")), version, kind])


def _patch_path(group: str, version: str, plural: str, kind: str, namespaced: bool) -> tuple[str, dict[str, Any]]:
    """The item path of a resource with its PATCH operation: enough for both of kubectl's readers.

    explain takes the kind from this operation's ``x-kubernetes-group-version-kind``; apply
    leaves validation to the server (``fieldValidation=Strict``) only when this operation lists
    that parameter, and otherwise wants ``/openapi/v2``, which neither server here has."""
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    scope = "/namespaces/{namespace}" if namespaced else ""
    operation = {
        "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": kind},
        "parameters": [{"name": name, "in": "query", "schema": {"type": "string"}} for name in _PATCH_PARAMETERS],
        "responses": {"200": {"description": "OK"}},
    }
    return f"{prefix}{scope}/{plural}/{{name}}", {"patch": operation}


def _document(version: str, paths: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    # components.schemas is always present, even empty: explain indexes it before it looks for
    # the kind, and a missing one fails with a template error instead of "GVK not found".
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (vlmr1 dev cluster)", "version": version},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def simulated_document(group: str, version: str) -> dict[str, Any]:
    """A stub for one simulated group/version: PATCH operations, no schemas (the simulated API
    does not validate fields, so there are none to explain)."""
    paths = dict(
        _patch_path(group, version, rt.plural, rt.kind, rt.namespaced)
        for rt in by_group_version().get((group, version), [])
    )
    return _document(version, paths, {})


def simulated_documents() -> dict[str, bytes]:
    """The encoded stub of every simulated group/version, by index key."""
    return {index_key(g, v): encode(simulated_document(g, v)) for g, v in by_group_version()}


def referenced_schemas(schemas: Mapping[str, Any], root: str) -> dict[str, Any]:
    """``root`` and every schema it reaches through ``$ref``s, from a ``components.schemas`` map."""
    found: dict[str, Any] = {}
    pending = [root]
    while pending:
        name = pending.pop()
        if name in found or name not in schemas:
            continue
        found[name] = schemas[name]
        pending.extend(_refs(schemas[name]))
    return found


def _refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(SCHEMA_REF_PREFIX):
                yield value.removeprefix(SCHEMA_REF_PREFIX)
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _established(crd: Mapping[str, Any]) -> bool:
    conditions = crd.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def crd_documents(crds: Iterable[Mapping[str, Any]], meta_schemas: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """One document per group/version served by an established CRD, by index key.

    meta_schemas: ObjectMeta and what it references (``referenced_schemas``), added to every
    document so ``kubectl explain <kind>.metadata`` resolves; may be empty (then metadata shows
    its type name and description only)."""
    docs: dict[str, dict[str, Any]] = {}
    for crd in crds:
        if not _established(crd):
            continue  # the server does not serve it yet (or any more): neither does discovery
        spec = crd["spec"]
        group, names, namespaced = spec["group"], spec["names"], spec["scope"] == "Namespaced"
        for served in spec["versions"]:
            if not served.get("served", True):
                continue
            version, kind = served["name"], names["kind"]
            schema = copy.deepcopy((served.get("schema") or {}).get("openAPIV3Schema") or {"type": "object"})
            # Like the real server: the CRD's own metadata schema (at most name rules) gives
            # way to ObjectMeta. allOf, because OpenAPI 3.0 ignores a $ref's siblings.
            schema.setdefault("properties", {})["metadata"] = {
                "allOf": [{"$ref": SCHEMA_REF_PREFIX + OBJECT_META}],
                "description": METADATA_DESCRIPTION,
            }
            schema["x-kubernetes-group-version-kind"] = [{"group": group, "version": version, "kind": kind}]
            doc = docs.setdefault(index_key(group, version), _document(version, {}, dict(meta_schemas)))
            doc["components"]["schemas"][model_name(group, version, kind)] = schema
            path, item = _patch_path(group, version, names["plural"], kind, namespaced)
            doc["paths"][path] = item
    return docs
