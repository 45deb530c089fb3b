"""The simulated core API's semantics, in-process: selectors, the three patch flavours, the
store (versions, conflicts, status split, finalizers, garbage collection) and watch streams."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from vlmr1_devtools.devcluster.errors import StatusError
from vlmr1_devtools.devcluster.patches import PatchError, json_patch, merge_patch, strategic_merge_patch
from vlmr1_devtools.devcluster.selectors import field_selector, label_selector
from vlmr1_devtools.devcluster.store import Store


def labelled(**labels: str) -> dict[str, Any]:
    return {"metadata": {"name": "x", "namespace": "ns", "labels": labels}}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=a", {"app": "a"}, True),
        ("app==a", {"app": "b"}, False),
        ("app!=a", {}, True),
        ("app in (a, b),tier", {"app": "b", "tier": "x"}, True),
        ("app in (a,b),tier", {"app": "b"}, False),
        ("app notin (a,b)", {"app": "c"}, True),
        ("app notin (a,b)", {"app": "a"}, False),
        ("!app", {}, True),
        ("!app", {"app": "a"}, False),
        ("vlmr1.io/job-name=j,app.kubernetes.io/part-of=vlmr1", {"vlmr1.io/job-name": "j"}, False),
        ("", {"any": "thing"}, True),
    ],
)
def test_label_selector(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert label_selector(selector)(labelled(**labels)) is expected


def test_field_selector_and_bad_selectors() -> None:
    obj = {"metadata": {"name": "p", "namespace": "ns"}, "status": {"phase": "Running"}}
    assert field_selector("metadata.name=p,metadata.namespace==ns")(obj)
    assert not field_selector("status.phase!=Running")(obj)
    with pytest.raises(StatusError) as exc:
        field_selector("metadata.name")
    assert exc.value.code == 400
    with pytest.raises(StatusError):
        label_selector("bad key=1")


def test_merge_patch_replaces_lists_and_deletes_nulls() -> None:
    target = {"a": {"b": 1, "c": 2}, "l": [1, 2]}
    assert merge_patch(target, {"a": {"b": None, "d": 3}, "l": [3]}) == {"a": {"c": 2, "d": 3}, "l": [3]}
    assert target == {"a": {"b": 1, "c": 2}, "l": [1, 2]}  # not modified


def test_strategic_merge_patch_merges_lists_by_key() -> None:
    pod = {
        "metadata": {"finalizers": ["a"]},
        "spec": {
            "containers": [
                {"name": "main", "image": "x", "env": [{"name": "A", "value": "1"}]},
                {"name": "side", "image": "y"},
            ],
            "tolerations": [{"key": "t"}],
        },
    }
    patch = {
        "metadata": {"finalizers": ["b"]},
        "spec": {
            "containers": [
                {"name": "main", "env": [{"name": "B", "value": "2"}]},
                {"name": "side", "$patch": "delete"},
            ],
            "tolerations": [{"key": "u"}],
            "$setElementOrder/containers": [{"name": "main"}],
        },
    }
    out = strategic_merge_patch(pod, patch)
    assert out["metadata"]["finalizers"] == ["a", "b"]
    assert out["spec"]["containers"] == [
        {"name": "main", "image": "x", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
    ]
    assert out["spec"]["tolerations"] == [{"key": "u"}]  # no merge key: replaced
    assert "$setElementOrder/containers" not in out["spec"]
    removed = strategic_merge_patch(out, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})
    assert removed["metadata"]["finalizers"] == ["b"]


def test_json_patch_operations_and_failed_test() -> None:
    doc = {"a": [1, 2], "b": {"c~d": 1, "e/f": 2}}
    ops = [
        {"op": "test", "path": "/b/c~0d", "value": 1},
        {"op": "add", "path": "/a/-", "value": 3},
        {"op": "replace", "path": "/b/e~1f", "value": 5},
        {"op": "copy", "from": "/a/0", "path": "/first"},
        {"op": "move", "from": "/first", "path": "/moved"},
        {"op": "remove", "path": "/a/0"},
    ]
    assert json_patch(doc, ops) == {"a": [2, 3], "b": {"c~d": 1, "e/f": 5}, "moved": 1}
    with pytest.raises(PatchError, match="test failed"):
        json_patch(doc, [{"op": "test", "path": "/a/0", "value": 9}])
    with pytest.raises(PatchError, match="missing"):
        json_patch(doc, [{"op": "replace", "path": "/nope/x", "value": 1}])


@pytest.fixture
def store() -> Store:
    return Store()


def pod(name: str, **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, **meta}, "spec": {"containers": [{"name": "c", "image": "i"}]}}


def test_create_assigns_metadata_and_rejects_bad_names(store: Store) -> None:
    pods = store.find("", "pods")
    assert pods is not None
    created = store.create(pods, "ns", pod("a"))
    meta = created["metadata"]
    assert meta["namespace"] == "ns" and meta["generation"] == 1 and meta["uid"] and meta["creationTimestamp"]
    assert int(meta["resourceVersion"]) == int(store.resource_version)
    assert created["status"] == {"phase": "Pending"}
    generated = store.create(pods, "ns", {"metadata": {"generateName": "w-"}, "spec": pod("")["spec"]})
    assert generated["metadata"]["name"].startswith("w-") and len(generated["metadata"]["name"]) == 7
    for body, code in [
        (pod("a"), 409),
        ({"metadata": {}, "spec": pod("")["spec"]}, 422),
        (pod("Bad_Name"), 422),
        ({"metadata": {"generateName": "Bad_"}, "spec": pod("")["spec"]}, 422),
        ({"metadata": {"name": "nocontainers"}}, 422),
    ]:
        with pytest.raises(StatusError) as exc:
            store.create(pods, "ns", body)
        assert exc.value.code == code, body
    assert exc.value.status()["reason"] == "Invalid"
    with pytest.raises(StatusError) as missing:
        store.get(pods, "ns", "nope")
    assert missing.value.status()["reason"] == "NotFound" and missing.value.code == 404


def test_updates_conflicts_generation_and_status_split(store: Store) -> None:
    pods = store.find("", "pods")
    assert pods is not None
    created = store.create(pods, "ns", pod("a", labels={"x": "1"}))
    rv = created["metadata"]["resourceVersion"]
    # A no-op write changes nothing, not even the resourceVersion.
    same, _ = store.patch(pods, "ns", "a", "application/merge-patch+json", {"metadata": {"labels": {"x": "1"}}})
    assert same["metadata"]["resourceVersion"] == rv
    # Metadata changes keep the generation; spec changes bump it; status on the main resource is ignored.
    relabelled, _ = store.patch(
        pods, "ns", "a", "application/merge-patch+json", {"metadata": {"labels": {"x": "2"}}, "status": {"phase": "X"}}
    )
    assert relabelled["metadata"]["generation"] == 1 and relabelled["status"] == {"phase": "Pending"}
    respec, _ = store.patch(pods, "ns", "a", "application/strategic-merge-patch+json", {"spec": {"nodeName": "n"}})
    assert respec["metadata"]["generation"] == 2
    running, _ = store.patch(
        pods, "ns", "a", "application/merge-patch+json", {"status": {"phase": "Running"}}, "status"
    )
    assert running["status"]["phase"] == "Running" and running["metadata"]["generation"] == 2
    stale = {**running, "metadata": {**running["metadata"], "resourceVersion": rv}}
    with pytest.raises(StatusError) as exc:
        store.replace(pods, "ns", "a", stale)
    assert exc.value.code == 409 and exc.value.reason == "Conflict"
    with pytest.raises(StatusError) as failed_test:
        store.patch(
            pods, "ns", "a", "application/json-patch+json", [{"op": "test", "path": "/spec/nodeName", "value": "m"}]
        )
    assert failed_test.value.code == 422 and failed_test.value.reason == "Invalid"


def test_finalizers_defer_deletion(store: Store) -> None:
    cms = store.find("", "configmaps")
    assert cms is not None
    store.create(cms, "ns", {"metadata": {"name": "f", "finalizers": ["x/y"]}})
    marked, gone = store.delete(cms, "ns", "f")
    assert not gone and marked["metadata"]["deletionTimestamp"]
    store.patch(cms, "ns", "f", "application/merge-patch+json", {"metadata": {"finalizers": None}})
    with pytest.raises(StatusError):
        store.get(cms, "ns", "f")


def test_garbage_collection_cascades_orphans_and_honours_other_owners(store: Store) -> None:
    pods, cms = store.find("", "pods"), store.find("", "configmaps")
    assert pods is not None and cms is not None
    owner = store.create(cms, "ns", {"metadata": {"name": "owner"}})
    other = store.create(cms, "ns", {"metadata": {"name": "other"}})

    def ref(obj: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ConfigMap", "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"]}

    store.create(pods, "ns", pod("child", ownerReferences=[ref(owner)]))
    store.create(pods, "ns", pod("shared", ownerReferences=[ref(owner), ref(other)]))
    grandchild_owner = store.get(pods, "ns", "child")
    store.create(
        cms, "ns", {"metadata": {"name": "grandchild", "ownerReferences": [ref(grandchild_owner) | {"kind": "Pod"}]}}
    )
    store.delete(cms, "ns", "owner")
    names = {o["metadata"]["name"] for rt in (pods, cms) for o in store.list_objects(rt, "ns")[0]}
    assert names == {"other", "shared"}  # child and grandchild collected, shared kept
    assert store.get(pods, "ns", "shared")["metadata"]["ownerReferences"] == [ref(other)]
    store.delete(cms, "ns", "other", propagation="Orphan")
    assert "ownerReferences" not in store.get(pods, "ns", "shared")["metadata"]


def test_external_owners_and_sweep(store: Store) -> None:
    pods = store.find("", "pods")
    assert pods is not None
    job_ref = {"apiVersion": "vlmr1.io/v1alpha1", "kind": "GRPOJob", "name": "j", "uid": "job-uid"}
    store.create(pods, "ns", pod("worker", ownerReferences=[job_ref]))
    store.create(
        pods, "ns", pod("dangling", ownerReferences=[{"apiVersion": "v1", "kind": "Pod", "name": "x", "uid": "nope"}])
    )
    assert store.external_owners() == [("vlmr1.io/v1alpha1", "GRPOJob", "ns", "j", "job-uid")]
    assert store.sweep() == 1  # the pod owned by a pod that does not exist
    store.owner_gone("job-uid")
    assert store.list_objects(pods, "ns")[0] == []


async def _drain(queue: asyncio.Queue[dict[str, Any]], count: int) -> list[tuple[str, str]]:
    events = [await asyncio.wait_for(queue.get(), 5) for _ in range(count)]
    return [(e["type"], e["object"]["metadata"].get("name", "")) for e in events]


def test_watch_replays_from_a_version_and_follows_selector_changes(store: Store) -> None:
    pods = store.find("", "pods")
    assert pods is not None

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        store.create(pods, "ns", pod("before", labels={"app": "a"}))
        since = store.resource_version
        store.create(pods, "ns", pod("after", labels={"app": "a"}))
        watcher = store.watch(pods, "ns", "app=a", None, since, loop)
        store.patch(pods, "ns", "before", "application/merge-patch+json", {"metadata": {"labels": {"app": "b"}}})
        store.patch(pods, "ns", "before", "application/merge-patch+json", {"metadata": {"labels": {"app": "a"}}})
        store.create(pods, "other", pod("elsewhere", labels={"app": "a"}))
        store.delete(pods, "ns", "after")
        assert await _drain(watcher.queue, 4) == [
            ("ADDED", "after"),
            ("DELETED", "before"),  # stopped matching
            ("ADDED", "before"),  # matches again
            ("DELETED", "after"),
        ]
        initial = store.watch(pods, None, None, None, None, loop, send_initial_events=True)
        events = await _drain(initial.queue, 3)
        assert {n for t, n in events if t == "ADDED"} == {"before", "elsewhere"}
        assert events[-1][0] == "BOOKMARK"
        store.unwatch(watcher)
        store.unwatch(initial)

    asyncio.run(scenario())


def test_watch_from_a_compacted_version_is_expired() -> None:
    store = Store(history_size=3)
    cms = store.find("", "configmaps")
    assert cms is not None
    first = store.resource_version
    for i in range(5):
        store.create(cms, "ns", {"metadata": {"name": f"c{i}"}})

    async def scenario() -> dict[str, Any]:
        watcher = store.watch(cms, "ns", None, None, first, asyncio.get_running_loop())
        return await asyncio.wait_for(watcher.queue.get(), 5)

    event = asyncio.run(scenario())
    assert event["type"] == "ERROR" and event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"
