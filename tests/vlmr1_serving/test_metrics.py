"""Uniform metrics: parsing each engine's text, and the adapter serving them over HTTP."""

from __future__ import annotations

import socket
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from vlmr1_serving.metrics import (
    ENGINE_METRICS,
    UniformSample,
    parse_brpc_vars,
    parse_prometheus_text,
    start_adapter,
    uniform_sample,
)

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_vllm_text() -> None:
    sample = uniform_sample("vllm", fixture("vllm_metrics.txt"))
    assert sample == UniformSample(
        generation_tokens=40211.0, prompt_tokens=291840.0, requests_running=7.0, requests_waiting=3.0
    )
    assert uniform_sample("vllm-ascend", fixture("vllm_metrics.txt")) == sample


def test_vllm_sums_label_sets_and_skips_nan() -> None:
    sample = uniform_sample("vllm", fixture("vllm_metrics_dp2.txt"))
    assert sample == UniformSample(generation_tokens=350.0, requests_running=7.0, requests_waiting=4.0)


def test_prometheus_parser_details() -> None:
    values = parse_prometheus_text(fixture("vllm_metrics.txt"))
    # Histogram parts keep their own names; the _created gauges are not the counters.
    assert values["vllm:time_to_first_token_seconds_count"] == 623.0
    assert values["vllm:request_success_total"] == 623.0
    assert values["vllm:cache_config_info"] == 1.0
    assert values["python_gc_objects_collected_total"] == 16506.0
    text = 'a_total{x="has } brace and space"} 2 1700000000000\nbroken line\nb 1e3\nc{} +Inf\n'
    assert parse_prometheus_text(text) == {"a_total": 2.0, "b": 1000.0, "c": float("inf")}


def test_xllm_brpc_vars() -> None:
    sample = uniform_sample("xllm", fixture("xllm_vars.txt"))
    assert sample == UniformSample(
        generation_tokens=40211.0, prompt_tokens=291840.0, requests_running=7.0, requests_waiting=3.0
    )
    values = parse_brpc_vars(fixture("xllm_vars.txt"))
    assert "process_cmdline" not in values  # a string
    assert "end_2_end_latency_milliseconds_latency_percentiles" not in values  # a list
    assert values["bthread_worker_usage"] == 1.237


def test_xllm_brpc_metrics_prometheus_form() -> None:
    sample = uniform_sample("xllm", fixture("xllm_brpc_metrics.txt"))
    assert sample == UniformSample(
        generation_tokens=40211.0, prompt_tokens=291840.0, requests_running=7.0, requests_waiting=2.0
    )


def test_missing_names_are_absent_not_zero() -> None:
    assert uniform_sample("vllm", "# nothing yet\n") == UniformSample()
    assert uniform_sample("xllm", "num_running_requests : 0\n") == UniformSample(requests_running=0.0)


def test_every_engine_has_a_mapping_of_all_fields() -> None:
    for engine, mapping in ENGINE_METRICS.items():
        assert set(mapping) == set(UniformSample.__dataclass_fields__), engine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class FakeEngine:
    """An engine metrics endpoint on 127.0.0.1 whose text the test sets."""

    def __init__(self, path: str) -> None:
        self.text = ""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = owner.text.encode()
                self.send_response(200 if self.path == path else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def xllm_engine() -> Iterator[FakeEngine]:
    engine = FakeEngine("/vars")
    yield engine
    engine.close()


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return parse_prometheus_text(text)


def test_adapter_serves_uniform_metrics_over_http(xllm_engine: FakeEngine) -> None:
    port = free_port()
    info = {"digest": "sha256:" + "a" * 64, "engine": "xllm", "served_model_name": "m"}
    server, thread = start_adapter("xllm", xllm_engine.url, port, addr="127.0.0.1", info=info)
    try:
        xllm_engine.text = fixture("xllm_vars.txt")
        first = scrape(port)
        assert first["vlmr1_serving_generation_tokens_total"] == 40211.0
        assert first["vlmr1_serving_prompt_tokens_total"] == 291840.0
        assert first["vlmr1_serving_requests_running"] == 7.0
        assert first["vlmr1_serving_requests_waiting"] == 3.0
        assert first["vlmr1_serving_engine_up"] == 1.0
        assert first["vlmr1_serving_model_info"] == 1.0
        # Every scrape reads the engine afresh.
        xllm_engine.text = fixture("xllm_vars.txt").replace(
            "num_processing_tokens_total_generated : 40211", "num_processing_tokens_total_generated : 40999"
        )
        assert scrape(port)["vlmr1_serving_generation_tokens_total"] == 40999.0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        assert "# TYPE vlmr1_serving_generation_tokens_total counter" in text
        assert f'vlmr1_serving_model_info{{digest="{info["digest"]}",engine="xllm",served_model_name="m"}} 1.0' in text
        # Engine gone: up is 0 and the token series are absent (not 0).
        xllm_engine.close()
        down = scrape(port)
        assert down["vlmr1_serving_engine_up"] == 0.0
        assert "vlmr1_serving_generation_tokens_total" not in down
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
