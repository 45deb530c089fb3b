"""The real operator process (`vlmr1 operator`) against the local control plane.

GRPOJobs live on the real apiextensions-apiserver; pods, services, config maps and events
on the simulated core API behind the front proxy. The tests play the kubelet by patching
pod status, and play the trainer with a small HTTP server that serves the metrics rank 0
would (pods' podIP is set to 127.0.0.1).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from vlmr1_core.api.grpojob import GRPOJob
from vlmr1_operator.builders import build_grpojob
from vlmr1_operator.settings import OperatorSettings
from vlmr1_serving.metrics import start_adapter
from vlmr1_trainer.progress.metrics import ProgressMetrics
from vlmr1_trainer.progress.record import record_from_logs

REPO = Path(__file__).resolve().parents[2]
NS = "e2e"
DIGEST = "sha256:" + "d" * 64
PROMETHEUS_TOKENS_QUERY = (
    'sum(rate(vlmr1_serving_generation_tokens_total{namespace="{namespace}",service_name="{service}"}[5s]))'
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


class FakeTrainer:
    """Serves the Prometheus text a trainer's rank 0 would, with settable progress."""

    def __init__(self) -> None:
        self.metrics = ProgressMetrics()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = generate_latest(outer.metrics.registry)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def report(self, step: int, reward: float) -> None:
        logs = {"reward": reward, "reward_std": 0.1}
        self.metrics.update(record_from_logs(logs, step=step, max_steps=100, timestamp=time.time()))


class FakeEngine:
    """A vLLM stand-in: serves vLLM's metric format, its token counter growing at `rate`
    tokens/s. The serving image's real metrics adapter turns it into vlmr1_serving_* on
    `port`, which the operator (or Prometheus) reads, as in a serving pod."""

    def __init__(self) -> None:
        self.rate, self.base, self.since = 0.0, 0.0, time.monotonic()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = (
                    "# TYPE vllm:generation_tokens_total counter\n"
                    f'vllm:generation_tokens_total{{model_name="rec"}} {outer.tokens()}\n'
                    "# TYPE vllm:num_requests_waiting gauge\n"
                    'vllm:num_requests_waiting{model_name="rec"} 0.0\n'
                ).encode()
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = free_port()
        engine_url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"
        self.adapter, _ = start_adapter("vllm", engine_url, self.port, addr="127.0.0.1")

    def tokens(self) -> float:
        return self.base + self.rate * (time.monotonic() - self.since)

    def set_rate(self, rate: float) -> None:
        self.base, self.since, self.rate = self.tokens(), time.monotonic(), rate


class Operator:
    """A `vlmr1 operator` subprocess that a test can restart."""

    def __init__(
        self, kubeconfig: str, trainer_port: int, log: Path, namespace: str = NS, peering: bool = False,
        engine_port: int = 9500,
    ) -> None:  # fmt: skip
        self.kubeconfig, self.trainer_port, self.log, self.engine_port = kubeconfig, trainer_port, log, engine_port
        self.namespace, self.peering = namespace, peering
        self.metrics_port, self.liveness_port = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": self.kubeconfig,
            "VLMR1_OPERATOR_PROGRESS_POLL_SECONDS": "1",
            "VLMR1_OPERATOR_TRAINER_METRICS_PORT": str(self.trainer_port),
            "VLMR1_OPERATOR_SERVING_METRICS_PORT": str(self.engine_port),
            # A short rate window: the test's series are seconds old, and rate() over the
            # default 1m window would underestimate them (the query is a setting for this).
            "VLMR1_OPERATOR_PROMETHEUS_TOKENS_QUERY": PROMETHEUS_TOKENS_QUERY,
        }
        argv = [sys.executable, "-m", "vlmr1_cli", "operator", "--namespace", self.namespace,
                "--metrics-port", str(self.metrics_port), "--liveness-port", str(self.liveness_port)]  # fmt: skip
        if not self.peering:
            argv.append("--standalone")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        wait_for("the operator's liveness endpoint", self.alive, timeout=60)

    def alive(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def metric(self, name: str, **labels: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            sample = line.startswith((name + "{", name + " "))
            if sample and all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def writes(self) -> float:
        return sum(self.metric("vlmr1_operator_api_calls_total", verb=v) for v in ("create", "patch", "delete"))


@pytest.fixture(scope="module")
def cluster(control_plane: Any) -> Any:
    for crd in sorted((REPO / "crds").glob("*.yaml")):
        control_plane.kubectl("apply", "--server-side", "-f", str(crd))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/grpojobs.vlmr1.io")
    control_plane.kubectl("create", "namespace", NS, check=False)
    return control_plane


@pytest.fixture(scope="module")
def trainer() -> Iterator[FakeTrainer]:
    fake = FakeTrainer()
    yield fake
    fake.server.shutdown()


@pytest.fixture(scope="module")
def engine() -> Iterator[FakeEngine]:
    fake = FakeEngine()
    yield fake
    fake.server.shutdown()
    fake.adapter.shutdown()


@pytest.fixture(scope="module")
def operator(
    cluster: Any, trainer: FakeTrainer, engine: FakeEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    op = Operator(str(cluster.kubeconfig), trainer.port, log, engine_port=engine.port)
    op.start()
    yield op
    op.stop()
    if os.environ.get("VLMR1_SHOW_OPERATOR_LOG"):
        print(op.log.read_text())


def job_manifest(name: str, **spec: Any) -> dict[str, Any]:
    data = yaml.safe_load((REPO / "examples" / "grpojob-rec-local.yaml").read_text())
    data["metadata"] = {"name": name, "namespace": NS}
    data["spec"]["resources"] = {"accelerator": "cpu", "nodes": 2, "processesPerNode": 1}
    data["spec"]["training"]["perDeviceBatchSize"] = 4
    data["spec"].update(spec)
    return data


def apply(cluster: Any, manifest: dict[str, Any]) -> None:
    cluster.kubectl("apply", "--validate=false", "-f", "-", input=json.dumps(manifest))


def get(cluster: Any, kind: str, name: str = "", selector: str = "") -> Any:
    args = ["get", kind, "-n", NS, "-o", "json"]
    if name:
        args.insert(2, name)
    if selector:
        args += ["-l", selector]
    result = cluster.kubectl(*args, check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def job_status(cluster: Any, name: str) -> dict[str, Any]:
    obj = get(cluster, "grpojob", name)
    return (obj or {}).get("status") or {}


def job_pods(cluster: Any, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get(cluster, "pods", selector=f"vlmr1.io/job-name={name}")["items"]
    return items


def set_pod_phase(cluster: Any, pod: str, phase: str) -> None:
    status = {"phase": phase, "podIP": "127.0.0.1"}
    cluster.kubectl("patch", "pod", pod, "-n", NS, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": status}))  # fmt: skip


def run_all(cluster: Any, name: str) -> None:
    pods = wait_for(f"{name}'s pods", lambda: len(job_pods(cluster, name)) == 2 and job_pods(cluster, name))
    for pod in pods:
        set_pod_phase(cluster, pod["metadata"]["name"], "Running")
    wait_for(f"{name} Running", lambda: job_status(cluster, name).get("phase") == "Running")


def test_create_makes_exactly_what_the_builders_say(cluster: Any, operator: Operator) -> None:
    manifest = job_manifest("create")
    apply(cluster, manifest)
    wait_for("two pods", lambda: len(job_pods(cluster, "create")) == 2)
    live_job = get(cluster, "grpojob", "create")
    expected = build_grpojob(
        GRPOJob.model_validate(live_job), OperatorSettings(trainer_metrics_port=operator.trainer_port)
    )
    for want in expected:
        live = get(cluster, want["kind"].lower(), want["metadata"]["name"])
        assert live is not None, f"{want['kind']} {want['metadata']['name']} missing"
        for key in ("labels", "ownerReferences"):
            assert live["metadata"][key] == want["metadata"][key], (want["kind"], key)
        for key in ("spec", "data"):
            if key in want and want["kind"] != "Service":
                assert {k: live[key][k] for k in want[key]} == want[key], (want["kind"], key)
    assert wait_for("status", lambda: job_status(cluster, "create").get("phase")) == "Pending"


def test_a_no_op_reconcile_writes_nothing(cluster: Any, operator: Operator) -> None:
    """The job from the test above is settled (its pods pending); waking its handler writes nothing."""
    wait_for("create settled", lambda: job_status(cluster, "create").get("phase") == "Pending")
    before = operator.writes()
    reconciles = operator.metric("vlmr1_operator_reconciles_total", kind="GRPOJob")
    cluster.kubectl("annotate", "grpojob", "create", "-n", NS, "touched=1")  # a metadata-only change
    wait_for(
        "the watch event's reconcile",
        lambda: operator.metric("vlmr1_operator_reconciles_total", kind="GRPOJob") >= reconciles + 1,
    )
    assert operator.writes() == before


def test_running_progress_and_printer_columns(cluster: Any, operator: Operator, trainer: FakeTrainer) -> None:
    apply(cluster, job_manifest("progress"))
    run_all(cluster, "progress")
    trainer.report(step=7, reward=0.625)
    # The example job declares checkpoint.bestMetric eval/rec-shapes-val/rec_acc.
    metrics = {"reward": 0.5, "eval/rec-shapes-val/rec_acc": 0.25}
    trainer.metrics.checkpoint_saved(5, "pvc://c/progress/checkpoint-5", DIGEST, metrics)
    status = wait_for(
        "progress in status", lambda: (s := job_status(cluster, "progress")).get("progress", {}).get("step") == 7 and s
    )
    assert status["progress"]["rewardMean"] == 0.625
    assert status["checkpoints"][0]["digest"] == DIGEST and status["bestCheckpoint"]["step"] == 5
    row = cluster.kubectl("get", "grpojob", "progress", "-n", NS, "--no-headers").stdout.split()
    assert row[:4] == ["progress", "Running", "7", "0.625"]


def test_pod_failure_restarts_the_gang_then_backoff_fails(cluster: Any, operator: Operator) -> None:
    apply(cluster, job_manifest("fails", runPolicy={"backoffLimit": 1}))
    run_all(cluster, "fails")
    old = {p["metadata"]["uid"] for p in job_pods(cluster, "fails")}
    set_pod_phase(cluster, "fails-node-1", "Failed")
    wait_for("restart counted", lambda: job_status(cluster, "fails").get("restarts") == 1)
    pods = wait_for("a new gang", lambda: (ps := job_pods(cluster, "fails")) and len(ps) == 2
                    and not ({p["metadata"]["uid"] for p in ps} & old) and ps)  # fmt: skip
    assert {p["metadata"]["labels"]["vlmr1.io/restart"] for p in pods} == {"1"}
    run_all(cluster, "fails")
    set_pod_phase(cluster, "fails-node-0", "Failed")
    wait_for("Failed", lambda: job_status(cluster, "fails").get("phase") == "Failed")
    reasons = {c["type"]: c["reason"] for c in job_status(cluster, "fails")["conditions"] if c["status"] == "True"}
    assert reasons == {"Failed": "BackoffLimitExceeded"}
    wait_for("pods deleted", lambda: job_pods(cluster, "fails") == [])


def test_a_user_error_fails_the_job_at_once(cluster: Any, operator: Operator) -> None:
    """The trainer exits 2 on a user error (here: a pinned model digest that does not match);
    the API server carries its termination message, and the job fails without a restart."""
    apply(cluster, job_manifest("refused", runPolicy={"backoffLimit": 3}))
    run_all(cluster, "refused")
    line = "vlmr1_trainer (rank 0): spec.model.digest: the starting checkpoint has digest sha256:a..., not sha256:b..."
    terminated = {"exitCode": 2, "reason": "Error", "message": f"loading\n{line}\n"}
    status = {
        "phase": "Failed",
        "podIP": "127.0.0.1",
        "containerStatuses": [
            {
                "name": "trainer",
                "image": "vlmr1-trainer",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": terminated},
            }
        ],
    }
    cluster.kubectl("patch", "pod", "refused-node-0", "-n", NS, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": status}))  # fmt: skip
    wait_for("Failed", lambda: job_status(cluster, "refused").get("phase") == "Failed")
    final = job_status(cluster, "refused")
    assert final.get("restarts", 0) == 0
    failed = next(c for c in final["conditions"] if c["type"] == "Failed")
    assert (failed["reason"], failed["message"]) == ("UserError", f"pod refused-node-0 stopped on a user error: {line}")
    wait_for("pods deleted", lambda: job_pods(cluster, "refused") == [])
    # test_operator_metrics counts the jobs the other tests leave.
    cluster.kubectl("delete", "grpojob", "refused", "-n", NS)
    wait_for("refused gone", lambda: get(cluster, "grpojob", "refused") is None)


def test_an_sft_job_runs_the_same_gang_and_shows_its_method(cluster: Any, operator: Operator) -> None:
    sft = job_manifest("supervised", method="sft", checkpoint={"bestMetric": "loss", "greaterIsBetter": False})
    del sft["spec"]["rewards"]
    apply(cluster, sft)
    run_all(cluster, "supervised")
    config = get(cluster, "configmap", "supervised-config")
    assert yaml.safe_load(config["data"]["config.yaml"])["method"] == "sft"
    row = cluster.kubectl("get", "grpojob", "supervised", "-n", NS, "-o", "wide", "--no-headers").stdout.split()
    # NAME PHASE STEP REWARD LOSS METHOD ...: an empty cell (no loss reported) takes no field
    # in the split, so look for the method among the fields rather than at a fixed index.
    assert row[:2] == ["supervised", "Running"] and "sft" in row[2:], row
    cluster.kubectl("delete", "grpojob", "supervised", "-n", NS)  # test_operator_metrics counts the jobs left
    wait_for("job gone", lambda: get(cluster, "grpojob", "supervised") is None)


def test_suspend_and_resume(cluster: Any, operator: Operator) -> None:
    apply(cluster, job_manifest("pause"))
    run_all(cluster, "pause")
    cluster.kubectl(
        "patch", "grpojob", "pause", "-n", NS, "--type=merge", "-p", '{"spec":{"runPolicy":{"suspend":true}}}'
    )
    wait_for("Suspended", lambda: job_status(cluster, "pause").get("phase") == "Suspended")
    wait_for("pods gone", lambda: job_pods(cluster, "pause") == [])
    assert get(cluster, "configmap", "pause-config") is not None
    cluster.kubectl(
        "patch", "grpojob", "pause", "-n", NS, "--type=merge", "-p", '{"spec":{"runPolicy":{"suspend":false}}}'
    )
    wait_for("pods back", lambda: len(job_pods(cluster, "pause")) == 2)


def test_master_success_finishes_the_job(cluster: Any, operator: Operator) -> None:
    apply(cluster, job_manifest("done"))
    run_all(cluster, "done")
    set_pod_phase(cluster, "done-node-0", "Succeeded")
    wait_for("Succeeded", lambda: job_status(cluster, "done").get("phase") == "Succeeded")
    assert job_status(cluster, "done").get("completionTime")


def test_delete_takes_the_children(cluster: Any, operator: Operator) -> None:
    apply(cluster, job_manifest("gone"))
    wait_for("pods", lambda: len(job_pods(cluster, "gone")) == 2)
    cluster.kubectl("delete", "grpojob", "gone", "-n", NS)
    wait_for("pods gone", lambda: job_pods(cluster, "gone") == [])
    wait_for("config map gone", lambda: get(cluster, "configmap", "gone-config") is None)


def test_invalid_spec_fails_with_a_condition_and_no_children(cluster: Any, operator: Operator) -> None:
    apply(cluster, job_manifest("badreward", rewards=[{"name": "no_such_reward"}]))
    status = wait_for("Invalid", lambda: (s := job_status(cluster, "badreward")).get("phase") == "Failed" and s)
    invalid = next(c for c in status["conditions"] if c["type"] == "Invalid")
    assert "spec.rewards[0].name: unknown reward 'no_such_reward'" in invalid["message"]
    assert "GRPOJob e2e/badreward is invalid" in invalid["message"]
    assert job_pods(cluster, "badreward") == []
    events = get(cluster, "events")["items"]
    assert any(e.get("reason") == "InvalidSpec" and e.get("type") == "Warning" for e in events)
    # An edit that is invalid in the same way is still observed (GitOps health waits on observedGeneration).
    apply(cluster, job_manifest("badreward", rewards=[{"name": "no_such_reward", "weight": 2.0}]))
    generation = get(cluster, "grpojob", "badreward")["metadata"]["generation"]
    assert generation == status["observedGeneration"] + 1
    wait_for("the edit observed", lambda: job_status(cluster, "badreward")["observedGeneration"] == generation)
    assert operator.alive()


def test_operator_restart_makes_no_duplicates(cluster: Any, operator: Operator) -> None:
    apply(cluster, job_manifest("survive"))
    run_all(cluster, "survive")
    uids = sorted(p["metadata"]["uid"] for p in job_pods(cluster, "survive"))
    operator.stop()
    operator.start()
    reconciles = operator.metric("vlmr1_operator_reconciles_total", kind="GRPOJob")
    wait_for(
        "reconciles after restart",
        lambda: operator.metric("vlmr1_operator_reconciles_total", kind="GRPOJob") > reconciles,
    )
    assert sorted(p["metadata"]["uid"] for p in job_pods(cluster, "survive")) == uids
    services = get(cluster, "services", selector="vlmr1.io/job-name=survive")["items"]
    assert len(services) == 2


def test_fifty_jobs_at_once(cluster: Any, operator: Operator) -> None:
    manifests = [job_manifest(f"many-{i}") for i in range(50)]
    cluster.kubectl("apply", "--validate=false", "-f", "-", input="\n---\n".join(yaml.safe_dump(m) for m in manifests))

    def all_pending() -> bool:
        items = get(cluster, "grpojobs")["items"]
        ready = [
            j
            for j in items
            if j["metadata"]["name"].startswith("many-") and (j.get("status") or {}).get("phase") == "Pending"
        ]
        return len(ready) == 50

    wait_for("50 jobs reconciled", all_pending, timeout=120)
    pods = get(cluster, "pods", selector="app.kubernetes.io/managed-by=vlmr1-operator")["items"]
    assert sum(p["metadata"]["labels"]["vlmr1.io/job-name"].startswith("many-") for p in pods) == 100


def test_operator_metrics(cluster: Any, operator: Operator) -> None:
    assert operator.metric("vlmr1_operator_reconciles_total", kind="GRPOJob", result="ok") > 0
    assert operator.metric("vlmr1_operator_reconcile_duration_seconds_count", kind="GRPOJob") > 0
    # The gauge counts every job by the phase its status shows, the invalid one (Failed) included.
    phases = Counter((j.get("status") or {}).get("phase") for j in get(cluster, "grpojobs")["items"])
    assert (phases["Running"], phases["Failed"], phases["Succeeded"]) == (2, 2, 1)  # progress, survive; fails, ...
    for phase in ("Pending", "Running", "Restarting", "Suspended", "Succeeded", "Failed"):
        wait_for(
            f"{phases[phase]} {phase} job(s) in the gauge",
            lambda p=phase: operator.metric("vlmr1_operator_grpojobs", phase=p) == phases[p],
        )


def test_two_replicas_never_both_act(cluster: Any, trainer: FakeTrainer, tmp_path: Path) -> None:
    """With kopf peering, the newer replica (higher priority) acts and the older one pauses."""
    ns = "peer"
    cluster.kubectl("create", "namespace", ns, check=False)
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "vlmr1", "namespace": ns}}
    cluster.kubectl("apply", "--validate=false", "-f", "-", input=json.dumps(peering))
    older = Operator(str(cluster.kubeconfig), trainer.port, tmp_path / "older.log", namespace=ns, peering=True)
    newer = Operator(str(cluster.kubeconfig), trainer.port, tmp_path / "newer.log", namespace=ns, peering=True)
    older.start()
    try:
        newer.start()
        try:
            # Both are registered in the peering object before the job appears.
            wait_for("two peers", lambda: len((get_peering(cluster, ns) or {}).get("status") or {}) == 2)
            manifest = job_manifest("peered")
            manifest["metadata"]["namespace"] = ns
            apply(cluster, manifest)
            wait_for("the job reconciled", lambda: newer.metric("vlmr1_operator_reconciles_total", kind="GRPOJob") > 0)
            pods = cluster.kubectl("get", "pods", "-n", ns, "-o", "json").stdout
            assert len(json.loads(pods)["items"]) == 2
            assert older.metric("vlmr1_operator_reconciles_total", kind="GRPOJob") == 0
            assert older.writes() == 0
        finally:
            newer.stop()
    finally:
        older.stop()


def get_peering(cluster: Any, ns: str) -> Any:
    result = cluster.kubectl("get", "kopfpeering", "vlmr1", "-n", ns, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def service_manifest(name: str, model: dict[str, Any]) -> dict[str, Any]:
    data = yaml.safe_load((REPO / "examples" / "vlmservice-dev-cpu.yaml").read_text())
    data["metadata"] = {"name": name, "namespace": NS}
    data["spec"]["model"] = model
    data["spec"]["replicas"] = {"min": 1, "max": 1}
    data["spec"].pop("autoscaling", None)
    return data


def ready_serving_pod(cluster: Any, service: str, name: str, ip: str | None = None) -> None:
    """Play the Deployment controller and kubelet: a ready pod of `service` serving DIGEST."""
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"vlmr1.io/service-name": service},
                     "annotations": {"vlmr1.io/model-digest": DIGEST}},
        "spec": {"containers": [{"name": "engine", "image": "x"}]},
    }  # fmt: skip
    apply(cluster, pod)
    status: dict[str, Any] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    if ip:
        status["podIP"] = ip
    cluster.kubectl("patch", "pod", name, "-n", NS, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": status}))  # fmt: skip


def test_vlmservice_serves_a_pinned_digest_and_rolls_on_a_new_one(cluster: Any, operator: Operator) -> None:
    apply(cluster, service_manifest("svc", {"uri": "pvc://ckpt/run/checkpoint-4", "digest": DIGEST}))
    deployment = wait_for("the Deployment", lambda: get(cluster, "deployment", "svc"))
    assert deployment["spec"]["template"]["metadata"]["annotations"]["vlmr1.io/model-digest"] == DIGEST
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    for kind in ("service", "poddisruptionbudget", "configmap"):
        assert get(cluster, kind, "svc" if kind != "configmap" else "svc-spec") is not None, kind
    status = wait_for(
        "status", lambda: (s := get(cluster, "vlmservice", "svc").get("status") or {}).get("endpoint") and s
    )
    assert status["endpoint"] == "http://svc.e2e.svc:8000/v1"
    assert (status["modelDigest"], status["phase"]) == (DIGEST, "Progressing")
    # Play the Deployment controller and kubelet: one ready replica serving the digest.
    cluster.kubectl("patch", "deployment", "svc", "-n", NS, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": {"replicas": 1, "readyReplicas": 1}}))  # fmt: skip
    ready_serving_pod(cluster, "svc", "svc-abc")
    status = wait_for("Ready", lambda: (s := get(cluster, "vlmservice", "svc")["status"]).get("phase") == "Ready" and s)
    assert status["servedDigests"] == [{"digest": DIGEST, "replicas": 1}]
    row = cluster.kubectl("get", "vlms", "svc", "-n", NS, "--no-headers").stdout.split()
    assert row[:3] == ["svc", "1", "1"]
    # Promotion: a new digest changes the pod template (a rolling update); the old replica still counts.
    new = "sha256:" + "9" * 64
    apply(cluster, service_manifest("svc", {"uri": "pvc://ckpt/run/checkpoint-8", "digest": new}))
    wait_for("the rollout", lambda: get(cluster, "deployment", "svc")["spec"]["template"]["metadata"]["annotations"]
             ["vlmr1.io/model-digest"] == new)  # fmt: skip
    status = wait_for(
        "Progressing", lambda: (s := get(cluster, "vlmservice", "svc")["status"]).get("modelDigest") == new and s
    )
    assert status["phase"] == "Progressing"
    assert status["servedDigests"] == [{"digest": DIGEST, "replicas": 1}]


def test_vlmservice_from_a_job_waits_for_its_best_checkpoint(cluster: Any, operator: Operator) -> None:
    apply(cluster, job_manifest("trained", runPolicy={"suspend": True}))
    apply(cluster, service_manifest("fromjob", {"fromJob": {"name": "trained", "checkpoint": "best"}}))
    status = wait_for(
        "Pending", lambda: (s := (get(cluster, "vlmservice", "fromjob") or {}).get("status") or {}).get("phase") and s
    )
    assert status["phase"] == "Pending"
    resolved = next(c for c in status["conditions"] if c["type"] == "ModelResolved")
    assert resolved["status"] == "False" and "has no 'best' checkpoint" in resolved["message"]
    assert get(cluster, "deployment", "fromjob") is None
    # As progress.fold writes them: the best marked, and copied to bestCheckpoint.
    checkpoints = [
        {"uri": "pvc://c/trained/checkpoint-2", "step": 2, "digest": DIGEST, "metrics": {"reward": 0.9}, "best": True},
        {"uri": "pvc://c/trained/checkpoint-4", "step": 4, "digest": "sha256:" + "4" * 64, "metrics": {"reward": 0.1}},
    ]
    status = {"checkpoints": checkpoints, "bestCheckpoint": checkpoints[0]}
    # No service event follows: the job's own watch event makes the service due.
    cluster.kubectl("patch", "grpojob", "trained", "-n", NS, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": status}))  # fmt: skip
    deployment = wait_for("the Deployment", lambda: get(cluster, "deployment", "fromjob"), timeout=30)
    assert deployment["spec"]["template"]["metadata"]["annotations"]["vlmr1.io/model-digest"] == DIGEST


def test_vlmservice_scales_on_measured_tokens(cluster: Any, operator: Operator, engine: FakeEngine) -> None:
    manifest = service_manifest("busy", {"uri": "pvc://ckpt/run/checkpoint-4", "digest": DIGEST})
    manifest["spec"]["replicas"] = {"min": 1, "max": 4}
    manifest["spec"]["autoscaling"] = {"targetTokensPerSecondPerReplica": 100, "evaluationPeriodSeconds": 1,
                                       "scaleDownStabilizationSeconds": 3}  # fmt: skip
    apply(cluster, manifest)
    wait_for("the Deployment", lambda: get(cluster, "deployment", "busy"))
    ready_serving_pod(cluster, "busy", "busy-1", ip="127.0.0.1")
    engine.set_rate(350.0)  # 3.5 replicas' worth at 100 tokens/s each
    wait_for("scale up to 4", lambda: get(cluster, "vlmservice", "busy")["spec"]["replicas"].get("count") == 4)
    assert get(cluster, "deployment", "busy")["spec"]["replicas"] == 4 or wait_for(
        "the Deployment follows", lambda: get(cluster, "deployment", "busy")["spec"]["replicas"] == 4
    )
    status = get(cluster, "vlmservice", "busy")["status"]
    assert status["throughput"]["tokensPerSecond"] > 300 and status["lastScaleTime"]
    engine.set_rate(0.0)
    wait_for("scale down to 1", lambda: get(cluster, "vlmservice", "busy")["spec"]["replicas"].get("count") == 1,
             timeout=45)  # fmt: skip
    scaled = [e for e in get(cluster, "events")["items"] if e.get("reason") == "Scaled"
              and e["involvedObject"]["name"] == "busy"]  # fmt: skip
    assert len(scaled) >= 2


@pytest.fixture(scope="module")
def prometheus(engine: FakeEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's Prometheus on 127.0.0.1, scraping the fake engine every second as a serving pod
    of service `promsvc` in namespace e2e (the labels the operator's default query selects)."""
    if os.environ.get("VLMR1_SKIP_PROMETHEUS") == "1":
        pytest.skip("VLMR1_SKIP_PROMETHEUS=1: the Prometheus test is skipped on request")
    binary = subprocess.run(
        ["bash", str(REPO / "tests" / "tools" / "install-prometheus.sh")], capture_output=True, text=True, timeout=600
    )
    assert binary.returncode == 0, f"cannot install Prometheus:\n{binary.stderr}"
    work = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{
            "job_name": "serving",
            "static_configs": [{"targets": [f"127.0.0.1:{engine.port}"],
                                "labels": {"namespace": NS, "service_name": "promsvc"}}],
        }],
    }  # fmt: skip
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with (work / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [binary.stdout.strip(), f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    wait_for("Prometheus ready", ready, timeout=60)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_vlmservice_scales_on_prometheus(cluster: Any, operator: Operator, engine: FakeEngine, prometheus: str) -> None:
    """A real Prometheus scrapes the engine's token counter; the operator reads the rate from it."""
    manifest = service_manifest("promsvc", {"uri": "pvc://ckpt/run/checkpoint-4", "digest": DIGEST})
    manifest["spec"]["replicas"] = {"min": 1, "max": 4}
    manifest["spec"]["autoscaling"] = {
        "targetTokensPerSecondPerReplica": 100, "evaluationPeriodSeconds": 1, "scaleDownStabilizationSeconds": 3,
        "metricsSource": {"prometheus": {"url": prometheus}},
    }  # fmt: skip
    apply(cluster, manifest)
    wait_for("the Deployment", lambda: get(cluster, "deployment", "promsvc"))
    ready_serving_pod(cluster, "promsvc", "promsvc-1", ip="127.0.0.2")
    engine.set_rate(350.0)
    wait_for(
        "scale up to 4 from Prometheus's rate",
        lambda: get(cluster, "vlmservice", "promsvc")["spec"]["replicas"].get("count") == 4,
        timeout=60,
    )
    throughput = get(cluster, "vlmservice", "promsvc")["status"]["throughput"]
    assert 250 < throughput["tokensPerSecond"] < 450
    engine.set_rate(0.0)
    wait_for(
        "back down to 1 once the rate drops",
        lambda: get(cluster, "vlmservice", "promsvc")["spec"]["replicas"].get("count") == 1,
        timeout=60,
    )


def test_gitops_promotion_end_to_end(cluster: Any, operator: Operator, tmp_path: Path) -> None:
    """docs/gitops.md on one machine: train the tiny model (every checkpoint evaluated), evaluate
    apart, promote the best into a Git repository, apply the promoted manifest as Argo CD would,
    and watch the operator roll the serving Deployment to the new digest."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@example.com",
           "GIT_COMMITTER_NAME": "ci", "GIT_COMMITTER_EMAIL": "ci@example.com"}  # fmt: skip

    def vlmr1(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "vlmr1_cli", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env
        ).stdout

    run = tmp_path / "run"
    assert (
        proc := vlmr1("run", str(REPO / "examples" / "grpojob-rec-local.yaml"), "--output", str(run))
    ).returncode == 0, proc.stderr[-2000:]
    checkpoint = run / "checkpoints" / "checkpoint-4"
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    shapes = REPO / "examples" / "data" / "rec-shapes"
    data = f"{shapes / 'val.jsonl'}:{shapes / 'images'}"
    proc = vlmr1("eval", "--checkpoint", str(checkpoint), "--task", "rec", "--name", "rec-shapes-val",
                 "--data", data, "--output", str(tmp_path / "eval"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["metrics"] == {k: v for k, v in manifest["metrics"].items() if k.startswith("eval/")}

    # The GitOps repository, and what is deployed from it now.
    repo = tmp_path / "deploy"
    repo.mkdir()
    git("init", "-q", "-b", "main")
    service = repo / "vlmservice.yaml"
    # Serving the run's first checkpoint, pinned by its digest, as a previous promotion left it.
    example = (REPO / "examples" / "vlmservice-dev-cpu.yaml").read_text()
    pinned = yaml.safe_load(example)["spec"]["model"]
    first = run / "checkpoints" / "checkpoint-2"
    first_digest = "sha256:" + hashlib.sha256((first / "manifest.json").read_bytes()).hexdigest()
    original = example.replace(pinned["digest"], first_digest).replace("checkpoint-4", "checkpoint-2")
    service.write_text(original)
    git("add", "vlmservice.yaml")
    git("commit", "-q", "-m", "serve rec-dev")
    old_digest = yaml.safe_load(original)["spec"]["model"]["digest"]
    cluster.kubectl("apply", "-n", NS, "-f", str(service))
    deployment = wait_for("the Deployment", lambda: get(cluster, "deployment", "rec-dev"))
    assert deployment["spec"]["template"]["metadata"]["annotations"]["vlmr1.io/model-digest"] == old_digest

    prefix = "pvc://vlmr1-checkpoints/rec-shapes-tiny-local/checkpoints"
    promote = ["promote", "--run-dir", str(run), "--select", "best", "--require", "rec_acc>=0",
               "--uri-prefix", prefix, "--service", str(service)]  # fmt: skip
    proc = vlmr1(*promote)
    assert proc.returncode == 0, proc.stderr[-2000:]
    new_digest = "sha256:" + hashlib.sha256((checkpoint / "manifest.json").read_bytes()).hexdigest()
    assert git("rev-parse", "--abbrev-ref", "HEAD").strip() == "promote/rec-dev/run-step-4"
    message = git("log", "-1", "--format=%B")
    assert new_digest in message and "step: 4" in message.lower() and "rec_acc" in message
    changed = [line for line in git("diff", "--unified=0", "main", "--", "vlmservice.yaml").splitlines()
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]  # fmt: skip
    assert changed == [
        "-    uri: pvc://vlmr1-checkpoints/rec-shapes-tiny-local/checkpoints/checkpoint-2",
        f"-    digest: {old_digest}",
        "+    uri: pvc://vlmr1-checkpoints/rec-shapes-tiny-local/checkpoints/checkpoint-4",
        f"+    digest: {new_digest}",
    ]
    commits = git("rev-list", "--count", "HEAD")
    assert vlmr1(*promote).returncode == 0 and git("rev-list", "--count", "HEAD") == commits  # idempotent

    # The sync: the promoted manifest applied; the operator rolls the Deployment to the new weights.
    cluster.kubectl("apply", "-n", NS, "-f", str(service))
    rolled = wait_for(
        "the rollout to the promoted digest",
        lambda: (
            (d := get(cluster, "deployment", "rec-dev"))
            and d["spec"]["template"]["metadata"]["annotations"]["vlmr1.io/model-digest"] == new_digest
            and d
        ),
    )
    assert rolled["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    status = wait_for(
        "status",
        lambda: (s := get(cluster, "vlmservice", "rec-dev").get("status") or {}).get("modelDigest") == new_digest and s,
    )
    assert status["phase"] in ("Pending", "Progressing")  # no kubelet here: no replica serves it yet
