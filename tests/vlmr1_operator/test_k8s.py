"""The k8s module against a recording fake of the kubernetes ApiClient: paths, verbs,
error mapping, RBAC checks, and that ensure() writes only what differs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vlmr1_operator import k8s


class FakeResponse:
    def __init__(self, status: int, data: Any) -> None:
        self.status, self.reason = status, "X"
        self.data = json.dumps(data).encode() if data is not None else b""

    def read(self) -> None:
        return None


class FakeRest:
    """The ApiClient's REST layer: answers from a dict of (method, path) -> (status, body)."""

    def __init__(self, answers: dict[tuple[str, str], tuple[int, Any]]) -> None:
        self.answers, self.requests = answers, []

    def request(self, method: str, url: str, **kw: Any) -> FakeResponse:
        assert url.startswith(FakeConfiguration.host)
        path = url.removeprefix(FakeConfiguration.host)
        self.requests.append((method, path, kw.get("body"), kw["headers"]["Content-Type"], kw["headers"]))
        status, body = self.answers.get((method, path.split("?", maxsplit=1)[0]), (404, {"message": "not found"}))
        return FakeResponse(status, body)


class FakeConfiguration:
    host = "https://api.test:6443"

    def auth_settings(self) -> dict[str, dict[str, str]]:
        return {"BearerToken": {"in": "header", "key": "authorization", "value": "Bearer t0ken"}}


class FakeApi:
    """Stands in for kubernetes' ApiClient: its configuration and REST layer, as k8s._send uses them."""

    def __init__(self, answers: dict[tuple[str, str], tuple[int, Any]]) -> None:
        self.configuration, self.rest_client = FakeConfiguration(), FakeRest(answers)

    @property
    def requests(self) -> list[tuple[Any, ...]]:
        return [r[:4] for r in self.rest_client.requests]


CM = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "c", "namespace": "ns", "labels": {"a": "1"}},
    "data": {"config.yaml": "x"},
}


def test_ensure_creates_a_missing_object() -> None:
    api = FakeApi({("POST", "/api/v1/namespaces/ns/configmaps"): (201, CM)})
    kube = k8s.Kube(api)
    assert kube.ensure(CM) is True
    assert [r[:2] for r in api.requests] == [
        ("GET", "/api/v1/namespaces/ns/configmaps/c"),
        ("POST", "/api/v1/namespaces/ns/configmaps"),
    ]
    assert kube.writes == 1


def test_ensure_leaves_an_equal_object_alone() -> None:
    live = {**CM, "metadata": {**CM["metadata"], "uid": "u", "resourceVersion": "7"}}
    api = FakeApi({("GET", "/api/v1/namespaces/ns/configmaps/c"): (200, live)})
    kube = k8s.Kube(api)
    assert kube.ensure(CM) is False
    assert kube.writes == 0


def test_ensure_patches_what_differs_with_a_merge_patch() -> None:
    live = {**CM, "data": {"config.yaml": "old"}}
    api = FakeApi(
        {
            ("GET", "/api/v1/namespaces/ns/configmaps/c"): (200, live),
            ("PATCH", "/api/v1/namespaces/ns/configmaps/c"): (200, CM),
        }
    )
    assert k8s.Kube(api).ensure(CM) is True
    method, _, body, content_type = api.requests[-1]
    assert (method, content_type) == ("PATCH", "application/merge-patch+json")
    assert body["data"] == {"config.yaml": "x"}


def test_pods_are_never_patched() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}, "spec": {"x": 1}}
    api = FakeApi({("GET", "/api/v1/namespaces/ns/pods/p"): (200, {**pod, "spec": {"x": 2}})})
    assert k8s.Kube(api).ensure(pod) is False
    assert [r[0] for r in api.requests] == ["GET"]


@pytest.mark.parametrize(
    ("status", "error"),
    [(404, k8s.NotFound), (409, k8s.Conflict), (422, k8s.Invalid), (503, k8s.Transient), (429, k8s.Transient),
     (403, k8s.ApiError)],
)  # fmt: skip
def test_errors_map_to_types(status: int, error: type[k8s.ApiError]) -> None:
    api = FakeApi({("POST", "/api/v1/namespaces/ns/configmaps"): (status, {"message": "why"})})
    with pytest.raises(error, match="why"):
        k8s.Kube(api).create(CM)


def test_requests_carry_the_bearer_token_and_the_configured_host() -> None:
    api = FakeApi({("GET", "/api/v1/namespaces/ns/pods"): (200, {"items": []})})
    assert k8s.Kube(api).list(k8s.PODS, "ns", {"app": "x"}) == []
    method, path, _, _, headers = api.rest_client.requests[0]
    assert (method, path) == ("GET", "/api/v1/namespaces/ns/pods?labelSelector=app%3Dx")
    assert headers["authorization"] == "Bearer t0ken"


def test_an_unreachable_server_is_transient() -> None:
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    class Down(FakeRest):
        def request(self, method: str, url: str, **kw: Any) -> FakeResponse:
            raise MaxRetryError(None, url, NewConnectionError(None, "refused"))  # type: ignore[arg-type]

    api = FakeApi({})
    api.rest_client = Down({})
    with pytest.raises(k8s.Transient, match="ConnectionError"):
        k8s.Kube(api).get(k8s.PODS, "ns", "p")


def test_calls_outside_the_rbac_rules_are_refused() -> None:
    secrets = k8s.Resource("", "v1", "secrets")
    with pytest.raises(PermissionError, match=r"permissions\.RULES"):
        k8s.Kube(FakeApi({})).get(secrets, "ns", "s")


def test_cluster_scoped_and_all_namespace_paths() -> None:
    assert k8s.CLUSTER_KOPF_PEERINGS.path("ignored", "vlmr1") == "/apis/kopf.dev/v1/clusterkopfpeerings/vlmr1"
    assert k8s.GRPOJOBS.path(None) == "/apis/vlmr1.io/v1alpha1/grpojobs"
    assert k8s.PODS.path("ns", "p", "status") == "/api/v1/namespaces/ns/pods/p/status"


def test_contains_compares_only_desired_fields() -> None:
    assert k8s.contains({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": 2}})
    assert not k8s.contains({"a": [1, 2]}, {"a": [1]})
    assert k8s.contains({"memory": "1Gi"}, {"memory": "1Gi"})
