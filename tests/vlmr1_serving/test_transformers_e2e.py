"""The transformers engine end to end: `python -m vlmr1_serving` verifies a real checkpoint of
the tiny Qwen2.5-VL, serves it on 127.0.0.1 (CPU), answers an OpenAI chat completion with
an image, and the metrics adapter reports the tokens it generated; the tiny Qwen3-VL, Qwen3.5
and GLM-4.1V checkpoints answer the same request."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from vlmr1_core.checkpoints import CheckpointInfo, save_checkpoint
from vlmr1_serving.metrics import parse_prometheus_text

REPO = Path(__file__).resolve().parents[2]
STARTUP_DEADLINE = 120.0
"""Seconds for the server to load (torch and transformers imports dominate, ~10 s alone)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def checkpoint_of(builtin: str, root: Path) -> CheckpointInfo:
    """A verified vlmr1 checkpoint holding the builtin tiny model ``builtin``."""
    from vlmr1_trainer.vlm.builtin import MARKER, ensure_builtin

    built = ensure_builtin(builtin, cache_root=root / "cache")

    def write(folder: Path) -> None:
        for path in built.iterdir():
            if path.name != MARKER:
                shutil.copy(path, folder / path.name)

    return save_checkpoint(root / "run", 3, write, metrics={"reward": 0.25})


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> CheckpointInfo:
    return checkpoint_of("tiny-qwen2.5-vl", tmp_path_factory.mktemp("tiny"))


def http(url: str, body: dict[str, Any] | None = None, timeout: float = 60) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextlib.contextmanager
def serving(checkpoint: CheckpointInfo, tmp: Path) -> Iterator[dict[str, Any]]:
    """`python -m vlmr1_serving` on ``checkpoint`` (CPU, 127.0.0.1), healthy, until the block ends."""
    spec = {
        "model": {"uri": str(checkpoint.path), "digest": checkpoint.digest},
        "engine": {"name": "transformers", "limitImagesPerPrompt": 1, "args": {"max-new-tokens": 6, "threads": 1}},
        "resources": {"accelerator": "cpu", "devicesPerReplica": 0},
    }
    spec_file = tmp / "vlmservice.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    port, metrics_port = free_port(), free_port()
    env = {**os.environ, "VLMR1_SERVICE_NAME": "rec-dev", "VLMR1_CACHE_DIR": str(tmp / "cache")}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    log = (tmp / "server.log").open("wb")
    argv = [sys.executable, "-m", "vlmr1_serving", "--spec", str(spec_file), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--metrics-port", str(metrics_port)]
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_DEADLINE
    try:
        while True:
            try:
                if http(base + "/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            try:
                # Waiting on the process, not sleeping: returns at once if it died.
                code = proc.wait(timeout=0.5)
                pytest.fail(f"server exited with {code}:\n{(tmp / 'server.log').read_text()}")
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not healthy in {STARTUP_DEADLINE}s:\n{(tmp / 'server.log').read_text()}")
        yield {"base": base, "metrics": f"http://127.0.0.1:{metrics_port}/metrics", "proc": proc, "tmp": tmp}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def server(tiny_checkpoint: CheckpointInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serving(tiny_checkpoint, tmp_path_factory.mktemp("serve")) as running:
        yield running


def image_data_url() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 28), (200, 30, 30)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def chat_body(images: int = 1) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": image_data_url()}}] * images
    parts.append({"type": "text", "text": "Locate the red box."})
    return {"model": "rec-dev", "messages": [{"role": "user", "content": parts}], "max_tokens": 5}


def test_chat_completion_with_an_image(server: dict[str, Any]) -> None:
    status, body = http(server["base"] + "/v1/chat/completions", chat_body())
    assert status == 200, body
    reply = json.loads(body)
    assert reply["object"] == "chat.completion" and reply["model"] == "rec-dev"
    choice = reply["choices"][0]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    usage = reply["usage"]
    assert 1 <= usage["completion_tokens"] <= 5
    # The image's placeholder tokens are part of the prompt: far more than the text alone.
    assert usage["prompt_tokens"] > 20
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    metrics = parse_prometheus_text(http(server["metrics"])[1].decode())
    assert metrics["vlmr1_serving_engine_up"] == 1.0
    assert metrics["vlmr1_serving_generation_tokens_total"] >= usage["completion_tokens"]
    assert metrics["vlmr1_serving_prompt_tokens_total"] >= usage["prompt_tokens"]
    assert metrics["vlmr1_serving_requests_running"] == 0.0
    assert metrics["vlmr1_serving_requests_waiting"] == 0.0


@pytest.mark.parametrize("builtin", ["tiny-qwen3-vl", "tiny-qwen3.5", "tiny-glm4.1v"])
def test_every_family_answers_a_chat_request_with_an_image(builtin: str, tmp_path: Path) -> None:
    """The CPU engine serves each newer family's checkpoint as it serves Qwen2.5-VL's."""
    with serving(checkpoint_of(builtin, tmp_path / "tiny"), tmp_path) as running:
        status, body = http(running["base"] + "/v1/chat/completions", chat_body())
    assert status == 200, body
    reply = json.loads(body)
    assert isinstance(reply["choices"][0]["message"]["content"], str)
    assert 1 <= reply["usage"]["completion_tokens"] <= 5
    assert reply["usage"]["prompt_tokens"] > 20  # the image's placeholder tokens are in the prompt


def test_models_and_refusals(server: dict[str, Any]) -> None:
    status, body = http(server["base"] + "/v1/models")
    assert status == 200 and [m["id"] for m in json.loads(body)["data"]] == ["rec-dev"]
    status, body = http(server["base"] + "/v1/chat/completions", chat_body(images=2))
    assert status == 400 and "at most 1 allowed" in json.loads(body)["error"]["message"]
    status, body = http(server["base"] + "/v1/chat/completions", {**chat_body(), "model": "other"})
    assert status == 404
    remote = chat_body()
    remote["messages"][0]["content"][0] = {"type": "image_url", "image_url": {"url": "http://example.invalid/x.png"}}
    status, body = http(server["base"] + "/v1/chat/completions", remote)
    assert status == 400 and "data: URL" in json.loads(body)["error"]["message"]


def test_sigterm_stops_engine_and_launcher(server: dict[str, Any]) -> None:
    proc: subprocess.Popen[bytes] = server["proc"]
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=30)
    # The engine exits on the forwarded SIGTERM; the launcher returns its status.
    assert code in (0, 128 + signal.SIGTERM), (server["tmp"] / "server.log").read_text()
    log = (server["tmp"] / "server.log").read_text()
    assert "verified" in log and "uniform metrics on 127.0.0.1" in log
