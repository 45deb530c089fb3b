"""`helm lint --strict` and `helm template` of the chart: the objects, the operator's
command line and environment, security, probes, NOTES.txt, and values that must be refused."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from vlmr1_cli import build_parser
from vlmr1_core.accelerators import DEVICE_RESOURCE
from vlmr1_operator.builders.ascend import hccl_env
from vlmr1_operator.settings import ENV_PREFIX, PEERING_NAME, HcclSettings, OperatorSettings

from .conftest import CHART, NAMESPACE, NAMESPACED_VALUES, RELEASE, REPO, Helm, env_of, of_kind, one

FULLNAME = f"{RELEASE}-vlmr1"


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The Deployment's one container."""
    operator: dict[str, Any]
    (operator,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert operator["name"] == "operator"
    return operator


def flag_values(args: list[str], flag: str) -> list[str]:
    """Values of a repeated `--flag value` option in an argv."""
    return [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == flag]


def operator_cli(objects: list[dict[str, Any]]) -> argparse.Namespace:
    """The Deployment's args parsed by the real `vlmr1 operator` parser (the image's ENTRYPOINT)."""
    args: argparse.Namespace = build_parser().parse_args(["operator", *container(objects)["args"]])
    return args


# --------------------------------------------------------------------------- lint


def test_lint_strict_default_values(helm: Helm) -> None:
    result = helm.lint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_lint_strict_namespaced_values(helm: Helm) -> None:
    result = helm.lint(NAMESPACED_VALUES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


# --------------------------------------------------------------------------- default values


def test_default_objects(default_objects: list[dict[str, Any]]) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in default_objects)
    assert kinds == sorted(
        [
            ("ServiceAccount", FULLNAME),
            ("ClusterRole", FULLNAME),
            ("ClusterRoleBinding", FULLNAME),
            ("Service", f"{FULLNAME}-metrics"),
            ("Deployment", FULLNAME),
            ("ClusterKopfPeering", PEERING_NAME),
        ]
    )
    for obj in default_objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        if obj["kind"] in ("ServiceAccount", "Service", "Deployment"):
            assert obj["metadata"]["namespace"] == NAMESPACE


def test_default_deployment_watches_the_cluster_with_peering(default_objects: list[dict[str, Any]]) -> None:
    deployment = one(default_objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    args = container(default_objects)["args"]
    assert "--namespace" not in args, "no --namespace: the operator watches all namespaces"
    assert "--standalone" not in args, "peering is on"
    assert flag_values(args, "--metrics-port") == ["8080"]
    assert flag_values(args, "--liveness-port") == ["8081"]
    assert container(default_objects)["image"] == "vlmr1/operator:0.1.0"  # the chart's appVersion
    # Standby replicas are spread over nodes.
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["topologyKey"] == (
        "kubernetes.io/hostname"
    )


def test_default_env_is_read_by_operator_settings(
    default_objects: list[dict[str, Any]], default_values: dict[str, Any]
) -> None:
    """The env the chart sets parses with OperatorSettings.from_env to the chart's values."""
    env = env_of(container(default_objects))
    assert json.loads(env["VLMR1_OPERATOR_TRAINER_IMAGES"]) == default_values["trainerImages"]
    settings = OperatorSettings.from_env(env)
    assert settings.trainer_images == default_values["trainerImages"]
    assert settings.device_resources == default_values["deviceResources"] == DEVICE_RESOURCE
    assert settings.master_port == default_values["masterPort"] == 29500
    assert settings.image_pull_policy == "IfNotPresent"
    # The chart's defaults are the operator's defaults: installing changes nothing silently.
    assert settings == OperatorSettings()


def test_every_operator_env_var_names_a_setting(
    default_objects: list[dict[str, Any]], namespaced_objects: list[dict[str, Any]]
) -> None:
    """A renamed OperatorSettings field cannot leave the chart setting a variable nobody reads."""
    fields = {name.upper() for name in OperatorSettings.model_fields}
    for objects in (default_objects, namespaced_objects):
        names = {e["name"] for e in container(objects)["env"]}
        unknown = {n for n in names if n.startswith(ENV_PREFIX)} - {ENV_PREFIX + f for f in fields}
        assert not unknown, f"the chart sets {sorted(unknown)}, which are no OperatorSettings fields"


def test_pod_runs_non_root_with_a_read_only_root(default_objects: list[dict[str, Any]]) -> None:
    pod = one(default_objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container(default_objects)["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert {m["mountPath"] for m in container(default_objects)["volumeMounts"]} == {"/tmp"}
    assert pod["serviceAccountName"] == one(default_objects, "ServiceAccount")["metadata"]["name"]


def test_probes_use_the_liveness_endpoint(default_objects: list[dict[str, Any]]) -> None:
    operator = container(default_objects)
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    assert ports == {"metrics": 8080, "liveness": 8081}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert operator[probe]["httpGet"] == {"path": "/healthz", "port": "liveness"}, probe


def test_metrics_service_selects_the_operator_pods(default_objects: list[dict[str, Any]]) -> None:
    service = one(default_objects, "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]
    pod_labels = one(default_objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert not of_kind(default_objects, "ServiceMonitor"), "the ServiceMonitor is off by default"


# --------------------------------------------------------------------------- non-default values


def test_namespaced_objects(namespaced_objects: list[dict[str, Any]]) -> None:
    kinds = sorted((o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in namespaced_objects)
    assert kinds == sorted(
        [
            ("ServiceAccount", NAMESPACE, "vlmr1-operator"),
            ("ClusterRole", "", FULLNAME),
            ("ClusterRoleBinding", "", FULLNAME),
            ("Role", "a", FULLNAME),
            ("RoleBinding", "a", FULLNAME),
            ("Role", "b", FULLNAME),
            ("RoleBinding", "b", FULLNAME),
            ("Service", NAMESPACE, f"{FULLNAME}-metrics"),
            ("ServiceMonitor", NAMESPACE, FULLNAME),
            ("Deployment", NAMESPACE, FULLNAME),
        ]
    )


def test_namespaced_deployment(namespaced_objects: list[dict[str, Any]], namespaced_values: dict[str, Any]) -> None:
    deployment = one(namespaced_objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    operator = container(namespaced_objects)
    assert deployment["spec"]["replicas"] == 1
    assert flag_values(operator["args"], "--namespace") == ["a", "b"]
    assert "--standalone" in operator["args"]
    assert flag_values(operator["args"], "--metrics-port") == ["9090"]
    assert flag_values(operator["args"], "--liveness-port") == ["9091"]
    assert operator["image"] == "registry.example.com/ml/vlmr1-operator:0.1.0-rc1"
    assert operator["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror-cred"}]
    assert pod["serviceAccountName"] == "vlmr1-operator"
    assert pod["priorityClassName"] == "ml-platform"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"] == namespaced_values["tolerations"]
    assert "affinity" not in pod, "one replica: no anti-affinity to add"
    assert operator["resources"] == namespaced_values["resources"]
    assert {p["name"]: p["containerPort"] for p in operator["ports"]} == {"metrics": 9090, "liveness": 9091}
    assert operator["livenessProbe"]["httpGet"]["port"] == "liveness"


def test_namespaced_env_is_read_by_operator_settings(
    namespaced_objects: list[dict[str, Any]], namespaced_values: dict[str, Any]
) -> None:
    env = env_of(container(namespaced_objects))
    settings = OperatorSettings.from_env(env)
    assert settings.trainer_images == namespaced_values["trainerImages"]
    assert settings.master_port == 23456
    assert settings.image_pull_policy == "Always"
    assert settings.pvc_root == "/data"  # from extraEnv


def test_service_monitor_scrapes_the_metrics_service(namespaced_objects: list[dict[str, Any]]) -> None:
    monitor = one(namespaced_objects, "ServiceMonitor")
    service = one(namespaced_objects, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}
    ]
    assert service["spec"]["ports"][0]["port"] == 9090


def test_args_parse_with_the_operator_cli(
    default_objects: list[dict[str, Any]], namespaced_objects: list[dict[str, Any]], helm: Helm
) -> None:
    """The rendered args are what `vlmr1 operator` accepts, and mean what the values say."""
    default = operator_cli(default_objects)
    assert (default.namespace, default.metrics_port, default.liveness_port) == ([], 8080, 8081)
    assert default.standalone is False
    assert default.verbose is False
    namespaced = operator_cli(namespaced_objects)
    assert (namespaced.namespace, namespaced.metrics_port, namespaced.liveness_port) == (["a", "b"], 9090, 9091)
    assert namespaced.standalone is True
    assert operator_cli(helm.template({"verbose": True})).verbose is True


def test_peering_objects_carry_the_operators_peering_name(default_objects: list[dict[str, Any]], helm: Helm) -> None:
    """The operator requires a peering object named PEERING_NAME; the chart creates it."""
    (cluster_peering,) = of_kind(default_objects, "ClusterKopfPeering")
    assert cluster_peering["metadata"]["name"] == PEERING_NAME
    assert "namespace" not in cluster_peering["metadata"]
    objects = helm.template({"watchNamespaces": ["a", "b"]})
    peerings = of_kind(objects, "KopfPeering")
    assert sorted((p["metadata"]["namespace"], p["metadata"]["name"]) for p in peerings) == [
        ("a", PEERING_NAME),
        ("b", PEERING_NAME),
    ]
    assert not of_kind(objects, "ClusterKopfPeering")
    assert "--standalone" not in container(objects)["args"]


def test_optional_objects_can_be_turned_off(helm: Helm) -> None:
    objects = helm.template(
        {
            "rbac": {"create": False},
            "serviceAccount": {"create": False, "name": "existing"},
            "metrics": {"service": {"enabled": False}},
            "peering": {"create": False},
        }
    )
    assert sorted(o["kind"] for o in objects) == ["Deployment"]
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "existing"


def test_notes_explain_how_to_start_and_watch_a_job(helm: Helm, chart_copy: Path) -> None:
    """NOTES.txt renders. `helm template` skips it, so a copy of the chart wraps it in a named
    template and renders that as a YAML string."""
    templates = chart_copy / "templates"
    notes_text = (templates / "NOTES.txt").read_text(encoding="utf-8")
    (templates / "_notes_probe.tpl").write_text('{{- define "notes-probe" -}}' + notes_text + "{{- end }}")
    (templates / "notes-probe.yaml").write_text('notes: {{ include "notes-probe" . | toJson }}\n')
    for values, watch in (({}, "kubectl get grpojobs -A -w"), ({"watchNamespaces": ["a"]}, "get grpojobs -n a -w")):
        result = helm.template_text(values, chart=chart_copy)
        assert result.returncode == 0, result.stderr
        (probe,) = [d for d in yaml.safe_load_all(result.stdout) if d and "notes" in d]
        notes: str = probe["notes"]
        assert "kubectl apply" in notes and "examples/grpojob-rec.yaml" in notes
        assert watch in notes
        assert f"svc/{FULLNAME}-metrics" in notes


def test_ascend_values_reach_the_operator_settings(helm: Helm) -> None:
    """A cluster's HCCL interfaces, ports and timeouts, device names and driver mounts, set as
    chart values, are what the operator's settings read (the kinds left out keep their defaults)."""
    hccl = {"socketIfname": "eth0", "connectTimeoutSeconds": 600, "hostSocketPortRange": "60000-60050"}
    objects = helm.template(
        {"ascend": {"hccl": hccl, "driverHostMounts": True}, "deviceResources": {"ascend": "huawei.com/ascend-1980"}}
    )
    settings = OperatorSettings.from_env(env_of(container(objects)))
    assert (settings.hccl.socket_ifname, settings.hccl.connect_timeout_seconds) == ("eth0", 600)
    assert settings.hccl.host_socket_port_range == "60000-60050"
    assert settings.hccl.exec_timeout_seconds == OperatorSettings().hccl.exec_timeout_seconds
    assert settings.hccl.gloo_socket_ifname is None
    assert settings.ascend_driver_host_mounts is True
    assert settings.device_resources["ascend"] == "huawei.com/ascend-1980"
    assert settings.device_resources["ascend310p"] == DEVICE_RESOURCE["ascend310p"]


def _doc_blocks(name: str) -> list[dict[str, Any]]:
    text = (REPO / "docs" / name).read_text(encoding="utf-8")
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S)]


def test_ascend_doc_presets_are_chart_values_the_operator_reads(helm: Helm) -> None:
    """Each device-plugin preset in docs/ascend.md installs, and pods request exactly its names."""
    presets = _doc_blocks("ascend.md")
    assert len(presets) == 3 and all(set(p) == {"deviceResources"} for p in presets)
    for preset in presets:
        settings = OperatorSettings.from_env(env_of(container(helm.template(preset))))
        assert settings.device_resources == {**DEVICE_RESOURCE, **preset["deviceResources"]}


def test_ascend_doc_lists_every_hccl_variable() -> None:
    """The doc's HCCL table names each variable the operator sets (and no other)."""
    text = (REPO / "docs" / "ascend.md").read_text(encoding="utf-8")
    section = text.split("## The HCCL contract of multi-node jobs")[1].split("\n## ")[0]
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", section, flags=re.M))
    full = HcclSettings(
        socket_ifname="eth0",
        gloo_socket_ifname="eth0",
        if_base_port=50000,
        host_socket_port_range="auto",
        npu_socket_port_range="auto",
    )
    assert documented == {e["name"] for e in hccl_env(full)}


# --------------------------------------------------------------------------- refused values


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": "two"}, "replicaCount: Invalid type"),
        ({"replicaCount": -1}, "replicaCount: Must be greater than or equal to 0"),
        ({"replicas": 2}, "Additional property replicas is not allowed"),
        ({"watchNamespaces": ["Team_A"]}, "watchNamespaces.0: Does not match pattern"),
        ({"watchNamespaces": ["a", "a"]}, "watchNamespaces: array items[0,1] must be unique"),
        ({"trainerImages": {"gpu": "x:1"}}, "trainerImages: Additional property gpu is not allowed"),
        ({"trainerImages": {"nvidia": ""}}, "trainerImages.nvidia: String length must be greater than or equal to 1"),
        ({"deviceResources": {"cpu": "x/y"}}, "deviceResources: Additional property cpu is not allowed"),
        ({"deviceResources": {"ascend": "Ascend910"}}, "deviceResources.ascend: Does not match pattern"),
        ({"masterPort": 70000}, "masterPort: Must be less than or equal to 65535"),
        ({"ascend": {"hccl": {"connectTimeoutSeconds": 60}}}, "connectTimeoutSeconds: Must be greater than or equal"),
        ({"ascend": {"hccl": {"npuSocketPortRange": "61000-"}}}, "npuSocketPortRange: Does not match pattern"),
        ({"ascend": {"hccl": {"timeout": 1}}}, "hccl: Additional property timeout is not allowed"),
        ({"ascend": {"driverHostMounts": "yes"}}, "driverHostMounts: Invalid type"),
        ({"image": {"pullPolicy": "Sometimes"}}, "image.pullPolicy: image.pullPolicy must be one of"),
        ({"metrics": {"serviceMonitor": {"interval": "soon"}}}, "metrics.serviceMonitor.interval: Does not match"),
        # Cross-field rules (the schema's if/then).
        ({"replicaCount": 3, "peering": {"enabled": False}}, "peering.enabled does not match: true"),
        ({"serviceAccount": {"create": False}}, "serviceAccount.name: String length must be greater than"),
        (
            {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}},
            "metrics.service.enabled does not match: true",
        ),
    ],
)
def test_values_schema_refuses_bad_values(helm: Helm, values: dict[str, Any], message: str) -> None:
    """values.schema.json fails both `helm lint --strict` and `helm template`, naming the field."""
    for result in (helm.template_text(values), helm.lint(values)):
        assert result.returncode != 0, f"{values} was accepted"
        assert message in result.stdout + result.stderr, result.stdout + result.stderr


def test_template_refuses_equal_ports(helm: Helm) -> None:
    """A rule JSON schema cannot state (two values equal) fails in the template, with a reason.
    (`helm lint` only reports a template `fail` as INFO, so `helm template` is the check.)"""
    result = helm.template_text({"liveness": {"port": 8080}})
    assert result.returncode != 0
    assert "metrics.port and liveness.port must differ" in result.stderr


def test_values_schema_is_strict_draft_07() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"

    def objects(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
        found = [(path, node)] if node.get("type") == "object" and "properties" in node else []
        for name, child in node.get("properties", {}).items():
            found += objects(child, f"{path}.{name}")
        return found

    loose = [path for path, node in objects(schema, "values") if node.get("additionalProperties") is not False]
    assert not loose, f"objects with declared properties must refuse others: {loose}"
