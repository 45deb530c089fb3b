"""Measured load of a VLMService: generated tokens per second and queued requests.

Two sources, as `autoscaling.metricsSource` says: Prometheus's HTTP API (a query over
the serving image's uniform `vlmr1_serving_*` metrics), or, without Prometheus, the
operator scraping each ready pod's metrics endpoint and turning the token counter into a
rate between two scrapes (a counter reset — a restarted engine — counts from zero).
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

TOKENS = "vlmr1_serving_generation_tokens_total"
WAITING = "vlmr1_serving_requests_waiting"

#: PromQL for a service's load; `{namespace}` and `{service}` are filled in. The serving
#: pods carry the label vlmr1.io/service-name, which Prometheus's Kubernetes discovery
#: usually exposes as `service_name` after relabelling; clusters that name it otherwise
#: set VLMR1_OPERATOR_PROMETHEUS_TOKENS_QUERY / _WAITING_QUERY.
DEFAULT_TOKENS_QUERY = f'sum(rate({TOKENS}{{namespace="{{namespace}}",service_name="{{service}}"}}[1m]))'
DEFAULT_WAITING_QUERY = f'sum({WAITING}{{namespace="{{namespace}}",service_name="{{service}}"}})'


@dataclass(frozen=True)
class Load:
    tokens_per_second: float
    waiting_requests: float


@dataclass(frozen=True)
class PodSample:
    tokens_total: float
    waiting: float


def parse_pod_metrics(text: str) -> PodSample | None:
    """The uniform counters in a serving pod's exposition (None when the token counter is missing)."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in (TOKENS, WAITING) and math.isfinite(sample.value):
                values[sample.name] = values.get(sample.name, 0.0) + sample.value
    if TOKENS not in values:
        return None
    return PodSample(values[TOKENS], values.get(WAITING, 0.0))


@dataclass
class RateTracker:
    """Token rates from successive counter readings, per pod (keyed by pod uid)."""

    last: dict[str, tuple[float, float]] = field(default_factory=dict)

    def update(self, now: float, samples: dict[str, PodSample]) -> Load | None:
        """The summed rate since the previous reading of each pod; None on the first reading."""
        rate, seen = 0.0, 0
        for pod, sample in samples.items():
            previous = self.last.get(pod)
            self.last[pod] = (now, sample.tokens_total)
            if previous is None or now <= previous[0]:
                continue
            delta = sample.tokens_total - previous[1]
            if delta < 0:  # the engine restarted: its counter began again at 0
                delta = sample.tokens_total
            rate += delta / (now - previous[0])
            seen += 1
        for gone in set(self.last) - set(samples):
            del self.last[gone]
        if seen == 0:
            return None
        return Load(rate, sum(s.waiting for s in samples.values()))


def scrape_pod(ip: str, port: int, timeout: float = 3.0) -> PodSample | None:
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}/metrics", timeout=timeout) as response:
            return parse_pod_metrics(response.read().decode("utf-8", "replace"))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def query_prometheus(base_url: str, query: str, timeout: float = 5.0) -> float | None:
    """One instant query's scalar result (the sum over the returned series); None on any failure."""
    url = f"{base_url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            answer = json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return None
    if answer.get("status") != "success":
        return None
    result = answer.get("data", {}).get("result", [])
    values = [float(series["value"][1]) for series in result if "value" in series]
    return sum(v for v in values if math.isfinite(v)) if values else 0.0


def fill(template: str, namespace: str, service: str) -> str:
    """A query template with {namespace} and {service} filled in (PromQL's own braces kept:
    str.format would read them as fields)."""
    return template.replace("{namespace}", namespace).replace("{service}", service)


def prometheus_load(base_url: str, namespace: str, service: str, tokens_query: str, waiting_query: str) -> Load | None:
    tokens = query_prometheus(base_url, fill(tokens_query, namespace, service))
    if tokens is None:
        return None
    waiting = query_prometheus(base_url, fill(waiting_query, namespace, service))
    return Load(tokens, waiting or 0.0)
