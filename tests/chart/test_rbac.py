"""The chart's RBAC grants exactly what vlmr1_operator.permissions.RULES lists: every API call
the operator makes is allowed, nothing else is (no `*`, no Secrets, no borrowed roles)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import pytest

from vlmr1_operator.permissions import RULES, Rule

from .conftest import NAMESPACE, Helm, of_kind, one

Triple = tuple[str, str, str]
#: Keys a rendered rule may have: no resourceNames (RULES has none), no nonResourceURLs.
RULE_KEYS = {"apiGroups", "resources", "verbs"}


def expected(rules: Iterable[Rule]) -> set[Triple]:
    return {(r.api_group, resource, verb) for r in rules for resource in r.resources for verb in r.verbs}


ALL = expected(RULES)
CLUSTER_SCOPED = expected(r for r in RULES if r.cluster_scoped)
NAMESPACED = expected(r for r in RULES if not r.cluster_scoped)


def triples(role: dict[str, Any]) -> set[Triple]:
    """(apiGroup, resource, verb) granted by a rendered (Cluster)Role; each granted once."""
    found: list[Triple] = []
    for rule in role["rules"]:
        assert set(rule) == RULE_KEYS, f"{role['kind']} {role['metadata']['name']}: unexpected keys in {rule}"
        found += [(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]]
    duplicates = [t for t, n in Counter(found).items() if n > 1]
    assert not duplicates, f"{role['kind']} grants {duplicates} more than once"
    return set(found)


def assert_exact(granted: set[Triple], wanted: set[Triple], what: str) -> None:
    missing, extra = wanted - granted, granted - wanted
    assert not missing, f"{what} lacks {sorted(missing)}: add them to helm/vlmr1/templates/_helpers.tpl"
    assert not extra, f"{what} grants {sorted(extra)}, which permissions.RULES does not list"


def assert_least_privilege(objects: list[dict[str, Any]]) -> None:
    for role in [*of_kind(objects, "ClusterRole"), *of_kind(objects, "Role")]:
        for group, resource, verb in triples(role):
            assert "*" not in (group, resource, verb), f"wildcard in {role['metadata']['name']}"
            assert resource != "secrets", "the operator never reads Secrets (pods mount them by name)"


def assert_bindings(objects: list[dict[str, Any]]) -> None:
    """Each binding binds the chart's own role to the operator's ServiceAccount, nothing else."""
    account = one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects}
    for binding_kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        for binding in of_kind(objects, binding_kind):
            ref = binding["roleRef"]
            assert ref["apiGroup"] == "rbac.authorization.k8s.io"
            assert ref["kind"] == role_kind, "a RoleBinding to a ClusterRole would borrow cluster-wide rules"
            namespace = binding["metadata"].get("namespace")
            assert (role_kind, namespace, ref["name"]) in roles, f"{binding_kind} binds a role the chart lacks: {ref}"
            assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]


def test_rules_are_well_formed() -> None:
    """RULES itself: reasons given, no wildcard, no Secrets."""
    for rule in RULES:
        assert rule.why.strip(), rule
        assert "*" not in (rule.api_group, *rule.resources, *rule.verbs), rule
        assert "secrets" not in rule.resources, rule


def test_clusterwide_rbac_equals_rules(default_objects: list[dict[str, Any]]) -> None:
    assert not of_kind(default_objects, "Role")
    assert not of_kind(default_objects, "RoleBinding")
    assert_exact(triples(one(default_objects, "ClusterRole")), ALL, "the ClusterRole (all namespaces)")
    assert_least_privilege(default_objects)
    assert_bindings(default_objects)


@pytest.mark.parametrize("peering", [True, False])
def test_namespaced_rbac_equals_rules(helm: Helm, peering: bool) -> None:
    namespaces = ["a", "b", "c"]
    objects = helm.template({"watchNamespaces": namespaces, "peering": {"enabled": peering}, "replicaCount": 1})
    assert_exact(triples(one(objects, "ClusterRole")), CLUSTER_SCOPED, "the ClusterRole (namespaced mode)")
    roles = of_kind(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == namespaces
    for role in roles:
        assert_exact(triples(role), NAMESPACED, f"the Role in {role['metadata']['namespace']}")
    assert sorted(b["metadata"]["namespace"] for b in of_kind(objects, "RoleBinding")) == namespaces
    assert_least_privilege(objects)
    assert_bindings(objects)


def test_every_call_in_rules_is_granted_in_each_mode(
    default_objects: list[dict[str, Any]], namespaced_objects: list[dict[str, Any]]
) -> None:
    """The union over ClusterRole + one watched namespace's Role is RULES, in either mode."""
    clusterwide = triples(one(default_objects, "ClusterRole"))
    role_a = next(r for r in of_kind(namespaced_objects, "Role") if r["metadata"]["namespace"] == "a")
    namespaced = triples(one(namespaced_objects, "ClusterRole")) | triples(role_a)
    assert_exact(clusterwide, ALL, "clusterwide RBAC")
    assert_exact(namespaced, ALL, "namespaced RBAC (ClusterRole + Role)")


def test_rbac_can_be_left_to_the_cluster_admin(helm: Helm) -> None:
    objects = helm.template({"rbac": {"create": False}})
    assert not [o for o in objects if o["apiVersion"].startswith("rbac.authorization.k8s.io/")]
