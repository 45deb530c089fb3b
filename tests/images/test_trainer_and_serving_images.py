"""The trainer image trains the README's local job as the operator's pod would run it, and the
serving image serves the checkpoint it wrote.

The pod is the one `build_grpojob` makes for examples/grpojob-rec-local.yaml (its datasets and
checkpoints moved onto claims, as on a cluster): `python -m vlmr1_trainer --config
/etc/vlmr1/config.yaml` from the ConfigMap, the torchrun contract's environment, uid 1000 with
fsGroup 1000, all capabilities dropped, the scratch emptyDir at /var/lib/vlmr1 and the
checkpoint claim mounted from a host folder. The checkpoint it leaves there is verified on the
host. Then the Deployment `build_vlmservice` makes for examples/vlmservice-dev-cpu.yaml, pinned
to that checkpoint's digest, runs the serving image: it verifies the digest and answers an
OpenAI chat completion with an image.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from vlmr1_core.api.grpojob import GRPOJob
from vlmr1_core.api.vlmservice import VLMService
from vlmr1_core.checkpoints import checkpoint_dirs, verify_checkpoint
from vlmr1_operator.builders import build_grpojob
from vlmr1_operator.builders.vlmservice import build_vlmservice
from vlmr1_operator.settings import OperatorSettings

from .podman import REPO, PodFolders, Podman, claim_folder, logs, pod_run_argv, remove, wait_exit

NAMESPACE = "default"
CHECKPOINT_CLAIM = "vlmr1-checkpoints"
DATA_CLAIM = "datasets"
TRAIN_TIMEOUT = 600
SERVE_TIMEOUT = 180


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def local_job() -> GRPOJob:
    """examples/grpojob-rec-local.yaml with its data and checkpoints on claims, as on a cluster."""
    data = yaml.safe_load((REPO / "examples" / "grpojob-rec-local.yaml").read_text(encoding="utf-8"))
    data["metadata"].update(namespace=NAMESPACE, uid="0f5c2d1e-image-test")
    spec = data["spec"]
    for dataset in [*spec["datasets"], *spec["evaluation"]["datasets"]]:
        dataset["jsonl"] = dataset["jsonl"].replace("data/", f"pvc://{DATA_CLAIM}/", 1)
        dataset["imageRoot"] = dataset["imageRoot"].replace("data/", f"pvc://{DATA_CLAIM}/", 1)
    # The run folder: checkpoints go to its checkpoints/ (the example VLMService's uri).
    spec["checkpoint"]["uri"] = f"pvc://{CHECKPOINT_CLAIM}/{data['metadata']['name']}"
    return GRPOJob.model_validate(data)


@pytest.fixture(scope="module")
def trained(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the trainer pod to completion; its log, exit status and checkpoint folder."""
    root = tmp_path_factory.mktemp("trainer-pod")
    settings = OperatorSettings(trainer_metrics_port=free_port())
    objects = build_grpojob(local_job(), settings)
    (pod,) = [o for o in objects if o["kind"] == "Pod"]
    config_maps = {o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "ConfigMap"}
    services = [f"{o['metadata']['name']}.{NAMESPACE}.svc" for o in objects if o["kind"] == "Service"]
    fs_group = pod["spec"]["securityContext"]["fsGroup"]
    data = root / "claims" / DATA_CLAIM
    shutil.copytree(REPO / "examples" / "data", data)
    claims = {DATA_CLAIM: data, CHECKPOINT_CLAIM: claim_folder(root / "claims" / CHECKPOINT_CLAIM, fs_group)}
    name = f"vlmr1-test-trainer-{root.name}"
    argv = pod_run_argv(pod, PodFolders(root, config_maps, claims), name=name, hosts=services)
    try:
        podman(*argv)
        code = wait_exit(podman, name, TRAIN_TIMEOUT)
        log = logs(podman, name)
    finally:
        remove(podman, name)
    run = claims[CHECKPOINT_CLAIM] / "rec-shapes-tiny-local" / "checkpoints"
    return {"code": code, "log": log, "run": run, "pod": pod}


def test_trainer_image_trains_the_local_job_into_a_verified_checkpoint(trained: dict[str, Any]) -> None:
    assert trained["code"] == 0, trained["log"][-6000:]
    steps = sorted(step for step, _ in checkpoint_dirs(trained["run"]))
    assert steps == [2, 4], (steps, trained["log"][-3000:])
    result = verify_checkpoint(trained["run"] / "checkpoint-4")
    assert result.ok, result.problems()
    assert result.step == 4 and result.digest and result.digest.startswith("sha256:")
    # The evaluation the job asks for ran inside the image and is pinned in the manifest.
    assert "eval/rec-shapes-val/rec_acc" in result.metrics
    # Written by the pod's user through the claim (fsGroup), not by root.
    assert (trained["run"] / "checkpoint-4" / "manifest.json").stat().st_uid == 1000


def test_trainer_pod_ran_under_the_operators_security_context(trained: dict[str, Any]) -> None:
    container = trained["pod"]["spec"]["containers"][0]
    assert container["command"][:3] == ["python", "-m", "vlmr1_trainer"]
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert trained["pod"]["spec"]["securityContext"]["runAsUser"] == 1000


def image_data_url() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 28), (200, 30, 30)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def http(url: str, body: dict[str, Any] | None = None, timeout: float = 60) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def serving_pod(digest: str, port: int, metrics_port: int) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    data = yaml.safe_load((REPO / "examples" / "vlmservice-dev-cpu.yaml").read_text(encoding="utf-8"))
    data["metadata"].update(namespace=NAMESPACE, uid="5e1f0c2a-image-test")
    data["spec"]["model"]["digest"] = digest
    data["spec"]["port"] = port
    # One thread and a short answer: the tiny model on a shared 2-core machine.
    data["spec"]["engine"]["args"] = {"max-new-tokens": 6, "threads": 1}
    settings = OperatorSettings(serving_metrics_port=metrics_port)
    objects = build_vlmservice(VLMService.model_validate(data), settings)
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    config_maps = {o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "ConfigMap"}
    pod = {"apiVersion": "v1", "kind": "Pod", **deployment["spec"]["template"]}
    return pod, config_maps


def test_serving_image_verifies_the_checkpoint_and_answers_a_chat_request_with_an_image(
    podman: Podman, trained: dict[str, Any], tmp_path: Path
) -> None:
    assert trained["code"] == 0, "the trainer pod failed; see the test above"
    digest = verify_checkpoint(trained["run"] / "checkpoint-4").digest
    assert digest
    port, metrics_port = free_port(), free_port()
    pod, config_maps = serving_pod(digest, port, metrics_port)
    assert pod["spec"]["containers"][0]["volumeMounts"][-1]["readOnly"] is True  # the model claim
    claims = {CHECKPOINT_CLAIM: trained["run"].parents[1]}
    name = f"vlmr1-test-serving-{tmp_path.name}"
    argv = pod_run_argv(pod, PodFolders(tmp_path, config_maps, claims), name=name)
    base = f"http://127.0.0.1:{port}"
    try:
        podman(*argv)
        deadline = time.monotonic() + SERVE_TIMEOUT
        while True:
            try:
                if http(base + "/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            state = podman("inspect", name, "--format", "{{.State.Running}}", check=False).stdout.strip()
            assert state == "true", f"serving container exited:\n{logs(podman, name)[-6000:]}"
            assert time.monotonic() < deadline, f"not healthy in {SERVE_TIMEOUT} s:\n{logs(podman, name)[-6000:]}"
            time.sleep(0.5)  # polling a server that is loading; the loop ends on its first 200
        content = [
            {"type": "image_url", "image_url": {"url": image_data_url()}},
            {"type": "text", "text": "Locate the red box."},
        ]
        body = {"model": "rec-dev", "messages": [{"role": "user", "content": content}], "max_tokens": 5}
        status, reply_bytes = http(base + "/v1/chat/completions", body)
        assert status == 200, reply_bytes
        reply = json.loads(reply_bytes)
        assert reply["object"] == "chat.completion" and reply["model"] == "rec-dev"
        assert isinstance(reply["choices"][0]["message"]["content"], str)
        assert 1 <= reply["usage"]["completion_tokens"] <= 5
        assert reply["usage"]["prompt_tokens"] > 20  # the image's placeholder tokens are in the prompt
        log = logs(podman, name)
        assert "verified" in log and digest in log, log[-3000:]
    finally:
        remove(podman, name)


def test_serving_image_refuses_a_checkpoint_whose_digest_does_not_match(
    podman: Podman, trained: dict[str, Any], tmp_path: Path
) -> None:
    assert trained["code"] == 0, "the trainer pod failed; see the test above"
    pod, config_maps = serving_pod("sha256:" + "0" * 64, free_port(), free_port())
    claims = {CHECKPOINT_CLAIM: trained["run"].parents[1]}
    name = f"vlmr1-test-serving-bad-{tmp_path.name}"
    argv = pod_run_argv(pod, PodFolders(tmp_path, config_maps, claims), name=name)
    try:
        podman(*argv)
        code = wait_exit(podman, name, SERVE_TIMEOUT)
        log = logs(podman, name)
    finally:
        remove(podman, name)
    assert code == 3, log[-3000:]  # vlmr1_serving's exit status for an unverified checkpoint
    assert "0" * 64 in log, log[-3000:]
