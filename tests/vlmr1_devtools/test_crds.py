"""The CRDs a dev cluster installs: kopf's peering CRDs and vlmr1's, from the source tree or,
in an installed package, generated from the models (the same documents)."""

from __future__ import annotations

import pytest
import yaml

from vlmr1_core.crdgen import render_all
from vlmr1_devtools.devcluster import crds


def test_peering_crds_are_the_two_kopf_kinds() -> None:
    docs = {d["spec"]["names"]["kind"]: d for d in crds.peering_crds()}
    assert set(docs) == {"ClusterKopfPeering", "KopfPeering"}
    assert docs["ClusterKopfPeering"]["spec"]["scope"] == "Cluster"
    assert docs["KopfPeering"]["spec"]["scope"] == "Namespaced"
    for doc in docs.values():
        assert doc["spec"]["group"] == "kopf.dev"
        props = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
        assert props["status"]["x-kubernetes-preserve-unknown-fields"] is True
        assert props["spec"]["x-kubernetes-preserve-unknown-fields"] is True


def test_vlmr1_crds_from_the_source_tree_equal_the_generated_ones() -> None:
    assert crds.source_tree_crds() is not None  # the tests run from a checkout
    from_files = crds.vlmr1_crds()
    generated = [doc for text in render_all().values() for doc in yaml.safe_load_all(text) if doc]
    assert sorted(d["metadata"]["name"] for d in from_files) == ["grpojobs.vlmr1.io", "vlmservices.vlmr1.io"]
    assert from_files == generated
    names = [d["metadata"]["name"] for d in crds.all_crds()]
    assert names[:2] == ["clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"]


def test_an_installed_package_generates_the_crds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crds, "source_tree_crds", lambda: None)
    assert [d["metadata"]["name"] for d in crds.vlmr1_crds()] == ["grpojobs.vlmr1.io", "vlmservices.vlmr1.io"]
