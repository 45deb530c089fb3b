"""Measuring a VLMService's load: pod counters into rates, and Prometheus instant queries."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from vlmr1_operator.throughput import (
    DEFAULT_TOKENS_QUERY,
    Load,
    PodSample,
    RateTracker,
    fill,
    parse_pod_metrics,
    prometheus_load,
    query_prometheus,
)

EXPOSITION = """\
# HELP vlmr1_serving_generation_tokens_total Generated (completion) tokens.
# TYPE vlmr1_serving_generation_tokens_total counter
vlmr1_serving_generation_tokens_total 1500.0
# TYPE vlmr1_serving_requests_waiting gauge
vlmr1_serving_requests_waiting 3.0
# TYPE vlmr1_serving_requests_running gauge
vlmr1_serving_requests_running 8.0
"""


def test_pod_metrics_parse() -> None:
    assert parse_pod_metrics(EXPOSITION) == PodSample(1500.0, 3.0)
    assert parse_pod_metrics("other_metric 1\n") is None


def test_rates_between_readings_summed_over_pods() -> None:
    tracker = RateTracker()
    assert tracker.update(0.0, {"a": PodSample(100, 1), "b": PodSample(0, 0)}) is None  # first reading
    load = tracker.update(10.0, {"a": PodSample(600, 2), "b": PodSample(300, 1)})
    assert load == Load(80.0, 3.0)  # (500 + 300) / 10 s


def test_counter_reset_counts_from_zero_and_gone_pods_are_forgotten() -> None:
    tracker = RateTracker()
    tracker.update(0.0, {"a": PodSample(1000, 0), "b": PodSample(50, 0)})
    load = tracker.update(10.0, {"a": PodSample(200, 0)})  # a restarted; b went away
    assert load == Load(20.0, 0.0)
    assert set(tracker.last) == {"a"}


class FakePrometheus:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.queries: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlparse(self.path).query)["query"][0]
                outer.queries.append(query)
                body = json.dumps(answers.get(query, {"status": "error"})).encode()
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def vector(*values: float) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": [{"value": [0, str(v)]} for v in values]}}


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    tokens = fill(DEFAULT_TOKENS_QUERY, "ns", "svc")
    fake = FakePrometheus({tokens: vector(120.5, 30.0), "sum(waiting)": vector(2)})
    yield fake
    fake.server.shutdown()


def test_prometheus_instant_queries(prometheus: FakePrometheus) -> None:
    assert query_prometheus(prometheus.url, "sum(waiting)") == 2.0
    assert query_prometheus(prometheus.url, "unknown") is None
    load = prometheus_load(prometheus.url, "ns", "svc", DEFAULT_TOKENS_QUERY, "sum(waiting)")
    assert load == Load(150.5, 2.0)
    assert prometheus.queries[-2] == (
        'sum(rate(vlmr1_serving_generation_tokens_total{namespace="ns",service_name="svc"}[1m]))'
    )


def test_unreachable_prometheus_is_no_measurement() -> None:
    assert query_prometheus("http://127.0.0.1:9", "up") is None
