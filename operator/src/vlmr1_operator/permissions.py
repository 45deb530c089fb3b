"""Every API call the operator makes, as RBAC rules: the single source for the chart's Role.

The Helm chart's ClusterRole/Role must grant exactly these (tests render the chart and
compare), and the k8s module's calls are checked against them, so least privilege
cannot drift: a new call needs a new line here, with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """One RBAC rule: verbs on resources of an API group, and why the operator needs them."""

    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str
    cluster_scoped: bool = False
    """Needs a ClusterRole even when the operator watches a list of namespaces."""

    def as_rbac(self) -> dict[str, list[str]]:
        return {"apiGroups": [self.api_group], "resources": list(self.resources), "verbs": list(self.verbs)}


RULES: tuple[Rule, ...] = (
    Rule(
        "vlmr1.io",
        ("grpojobs", "vlmservices"),
        ("get", "list", "watch", "patch"),
        "watch the custom resources (and list them to resync); kopf may patch annotations on them",
    ),
    Rule(
        "vlmr1.io",
        ("grpojobs/status", "vlmservices/status"),
        ("get", "patch"),
        "write phase, conditions, progress and checkpoints",
    ),
    Rule("vlmr1.io", ("grpojobs",), ("delete",), "delete finished jobs after runPolicy.ttlSecondsAfterFinished"),
    Rule("vlmr1.io", ("vlmservices/scale",), ("patch",), "the autoscaler sets a VLMService's replica count"),
    Rule("", ("pods",), ("get", "list", "watch", "create", "delete"), "run the training gang; restart it"),
    Rule("", ("services", "configmaps"), ("get", "list", "watch", "create", "patch", "delete"), "gang DNS; config"),
    Rule("", ("events",), ("create", "patch"), "report transitions and invalid specs as Events"),
    Rule(
        "apps",
        ("deployments",),
        ("get", "list", "watch", "create", "patch", "delete"),
        "run a VLMService's engine replicas",
    ),
    Rule(
        "policy",
        ("poddisruptionbudgets",),
        ("get", "list", "watch", "create", "patch", "delete"),
        "keep a VLMService serving through node drains",
    ),
    Rule(
        "scheduling.volcano.sh",
        ("podgroups",),
        ("get", "list", "watch", "create", "patch", "delete"),
        "gang scheduling with Volcano",
    ),
    Rule(
        "kopf.dev",
        ("kopfpeerings",),
        ("get", "list", "watch", "patch"),
        "peering between operator replicas (only one acts) when watching namespaces",
    ),
    Rule(
        "kopf.dev",
        ("clusterkopfpeerings",),
        ("get", "list", "watch", "patch"),
        "peering between operator replicas when watching the whole cluster",
        cluster_scoped=True,
    ),
    Rule(
        "apiextensions.k8s.io",
        ("customresourcedefinitions",),
        ("list", "watch"),
        "kopf notices CRDs installed after it started",
        cluster_scoped=True,
    ),
    Rule("", ("namespaces",), ("list", "watch"), "kopf resolves namespace patterns", cluster_scoped=True),
)


def allowed(api_group: str, resource: str, verb: str) -> bool:
    """Whether RULES grant a call (tests check every call the operator makes against this)."""
    return any(api_group == r.api_group and resource in r.resources and verb in r.verbs for r in RULES)
