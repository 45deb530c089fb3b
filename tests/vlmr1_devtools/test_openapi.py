"""The OpenAPI v3 documents the dev cluster's proxy builds (openapi.py), without a server: their
shape is what kubectl explain and kubectl's field-validation check look for. The real kubectl
reads them in tests/e2e/test_crds_on_apiserver.py."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from vlmr1_devtools.devcluster import crds, openapi

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
# The shape of the real server's components: ObjectMeta reaches these through $refs.
UPSTREAM_SCHEMAS: dict[str, Any] = {
    META + "ObjectMeta": {
        "description": "ObjectMeta is metadata that all persisted resources must have",
        "properties": {
            "ownerReferences": {"items": {"allOf": [{"$ref": "#/components/schemas/" + META + "OwnerReference"}]}},
            "creationTimestamp": {"allOf": [{"$ref": "#/components/schemas/" + META + "Time"}]},
        },
    },
    META + "OwnerReference": {"properties": {"uid": {"type": "string"}}},
    META + "Time": {"type": "string", "format": "date-time"},
    META + "Status": {"properties": {"details": {"$ref": "#/components/schemas/" + META + "StatusDetails"}}},
    META + "StatusDetails": {"type": "object"},
}


def established(crd: dict[str, Any]) -> dict[str, Any]:
    return {**crd, "status": {"conditions": [{"type": "Established", "status": "True"}]}}


def vlmr1_documents() -> dict[str, dict[str, Any]]:
    meta = openapi.referenced_schemas(UPSTREAM_SCHEMAS, openapi.OBJECT_META)
    return openapi.crd_documents([established(c) for c in crds.all_crds()], meta)


def test_object_meta_brings_what_it_references_and_nothing_else() -> None:
    found = openapi.referenced_schemas(UPSTREAM_SCHEMAS, openapi.OBJECT_META)
    assert set(found) == {META + "ObjectMeta", META + "OwnerReference", META + "Time"}
    assert openapi.referenced_schemas({}, openapi.OBJECT_META) == {}


def test_one_document_per_served_group_version_of_an_established_crd() -> None:
    docs = vlmr1_documents()
    assert set(docs) == {"apis/vlmr1.io/v1alpha1", "apis/kopf.dev/v1"}
    schemas = docs["apis/vlmr1.io/v1alpha1"]["components"]["schemas"]
    assert {"io.vlmr1.v1alpha1.GRPOJob", "io.vlmr1.v1alpha1.VLMService", META + "ObjectMeta", META + "Time"} <= set(
        schemas
    )


def test_a_kind_is_found_the_way_kubectl_explain_finds_it() -> None:
    """explain: the kind from an operation's x-kubernetes-group-version-kind on the resource's
    path, then the schema carrying the same GVK in a list; the schema is the CRD's, documented."""
    doc = vlmr1_documents()["apis/vlmr1.io/v1alpha1"]
    gvk = {"group": "vlmr1.io", "version": "v1alpha1", "kind": "GRPOJob"}
    patch = doc["paths"]["/apis/vlmr1.io/v1alpha1/namespaces/{namespace}/grpojobs/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == gvk
    schema = next(
        s for s in doc["components"]["schemas"].values() if gvk in s.get("x-kubernetes-group-version-kind", [])
    )
    crd = next(c for c in crds.vlmr1_crds() if c["spec"]["names"]["kind"] == "GRPOJob")
    assert schema["properties"]["spec"] == crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    grpo = schema["properties"]["spec"]["properties"]["grpo"]
    assert grpo["properties"]["numGenerations"]["description"].startswith("Completions sampled per prompt")


def test_metadata_is_object_meta_resolvable_in_the_same_document() -> None:
    doc = vlmr1_documents()["apis/vlmr1.io/v1alpha1"]
    metadata = doc["components"]["schemas"]["io.vlmr1.v1alpha1.VLMService"]["properties"]["metadata"]
    (ref,) = metadata["allOf"]
    assert ref["$ref"].removeprefix("#/components/schemas/") in doc["components"]["schemas"]
    assert "Standard object's metadata" in metadata["description"]


def test_patch_operations_let_kubectl_leave_field_validation_to_the_server() -> None:
    """kubectl sends fieldValidation=Strict only when the kind's PATCH operation lists it; the
    cluster-scoped kopf kind has a path without a namespace."""
    doc = vlmr1_documents()["apis/kopf.dev/v1"]
    patch = doc["paths"]["/apis/kopf.dev/v1/clusterkopfpeerings/{name}"]["patch"]
    assert {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}} in patch["parameters"]


def test_crds_the_server_does_not_serve_are_left_out() -> None:
    grpojob = next(c for c in crds.vlmr1_crds() if c["spec"]["names"]["kind"] == "GRPOJob")
    assert openapi.crd_documents([grpojob], {}) == {}  # not established yet
    unserved = copy.deepcopy(established(grpojob))
    unserved["spec"]["versions"][0]["served"] = False
    assert openapi.crd_documents([unserved], {}) == {}


def test_simulated_stubs_have_patch_operations_and_an_empty_schema_map() -> None:
    """No schemas to explain for the simulated kinds, but an empty map: explain then says the
    kind is not in the schema rather than failing inside its template."""
    doc = openapi.simulated_document("", "v1")
    assert doc["components"] == {"schemas": {}}
    patch = doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert "/api/v1/namespaces/{name}" in doc["paths"]  # cluster-scoped


def test_index_entries_are_addressed_by_the_hash_of_the_bytes_served() -> None:
    body = openapi.encode({"b": 1, "a": 2})
    assert json.loads(body) == {"a": 2, "b": 1}
    assert body == openapi.encode({"a": 2, "b": 1})  # key order does not change the hash
    entry = openapi.index_entry("apis/vlmr1.io/v1alpha1", body)
    digest = hashlib.sha512(body).hexdigest().upper()
    assert entry == {"serverRelativeURL": f"/openapi/v3/apis/vlmr1.io/v1alpha1?hash={digest}"}
