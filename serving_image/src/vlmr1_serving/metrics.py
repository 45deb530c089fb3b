"""One metrics endpoint whatever the engine: ``vlmr1_serving_*`` on its own port.

Each engine counts tokens and queues under its own names. The adapter scrapes the
engine's endpoint on every scrape of its own (no cache, no background polling: the
values are exactly as fresh as the engine's) and re-exports:

* ``vlmr1_serving_generation_tokens_total``: vLLM ``vllm:generation_tokens_total``;
  xllm ``num_processing_tokens_total_generated``
* ``vlmr1_serving_prompt_tokens_total``: vLLM ``vllm:prompt_tokens_total``;
  xllm ``num_processing_tokens_total_prompt``
* ``vlmr1_serving_requests_running``: vLLM ``vllm:num_requests_running``; xllm ``num_running_requests``
* ``vlmr1_serving_requests_waiting``: vLLM ``vllm:num_requests_waiting``;
  xllm ``num_waiting_requests`` + ``num_pending_requests``

vllm-ascend uses vLLM's names. The transformers dev server (:mod:`vlmr1_serving.hfserver`) exports the uniform names
itself. vLLM labels its series (``model_name``, ``engine``): the adapter sums over label
sets, so data-parallel engines add up. xllm's names are bvar variables defined in its
``xllm/core/common/metrics.cpp`` (``DEFINE_COUNTER``/``DEFINE_GAUGE``); brpc prints them
on ``/vars`` as ``name : value`` (and on ``/brpc_metrics`` in Prometheus text, which the
parser also reads). Whether xllm's *pending* requests (received, not yet handed to the
scheduler) belong in "waiting" is our reading of those definitions; both are queued
work, so they are added. A name missing from the engine's output is left out rather
than reported as 0, so a renamed engine metric shows up as absent, not as an idle engine.

Also exported: ``vlmr1_serving_engine_up`` (1 when the last scrape of the engine
succeeded) and ``vlmr1_serving_model_info{digest,engine,served_model_name}`` = 1, which
tells which checkpoint a replica serves.
"""

from __future__ import annotations

import logging
import math
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = [
    "ENGINE_METRICS",
    "ENGINE_METRICS_PATH",
    "UNIFORM",
    "UniformCollector",
    "UniformSample",
    "engine_scraper",
    "parse_brpc_vars",
    "parse_prometheus_text",
    "start_adapter",
    "uniform_sample",
]

log = logging.getLogger(__name__)

#: Uniform field -> (exported name, help, counter?).
UNIFORM: dict[str, tuple[str, str, bool]] = {
    "generation_tokens": ("vlmr1_serving_generation_tokens_total", "Generated (completion) tokens.", True),
    "prompt_tokens": ("vlmr1_serving_prompt_tokens_total", "Prompt (prefill) tokens processed.", True),
    "requests_running": ("vlmr1_serving_requests_running", "Requests being generated now.", False),
    "requests_waiting": ("vlmr1_serving_requests_waiting", "Requests queued, not yet running.", False),
}

_VLLM: dict[str, tuple[str, ...]] = {
    "generation_tokens": ("vllm:generation_tokens_total",),
    "prompt_tokens": ("vllm:prompt_tokens_total",),
    "requests_running": ("vllm:num_requests_running",),
    "requests_waiting": ("vllm:num_requests_waiting",),
}

#: Engine -> uniform field -> the engine's names, summed (see the module docstring).
ENGINE_METRICS: dict[str, dict[str, tuple[str, ...]]] = {
    "vllm": _VLLM,
    "vllm-ascend": _VLLM,
    "xllm": {
        "generation_tokens": ("num_processing_tokens_total_generated",),
        "prompt_tokens": ("num_processing_tokens_total_prompt",),
        "requests_running": ("num_running_requests",),
        "requests_waiting": ("num_waiting_requests", "num_pending_requests"),
    },
    "transformers": {field: (name,) for field, (name, _, _) in UNIFORM.items()},
}

#: Where each engine serves its metrics, on its HTTP port.
ENGINE_METRICS_PATH: dict[str, str] = {
    "vllm": "/metrics",
    "vllm-ascend": "/metrics",
    "xllm": "/vars",
    "transformers": "/metrics",
}

# name{labels} value [timestamp]; label values may hold spaces and braces, never a
# newline, and the value and timestamp hold no '}', so a greedy label match is safe.
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{.*\})?\s+(?P<value>\S+)(?:\s+-?\d+)?\s*$")
_BRPC_VAR = re.compile(r"^(?P<name>[A-Za-z_][\w:.-]*)\s+:\s+(?P<value>\S.*?)\s*$")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_prometheus_text(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {sample name: value summed over label sets}.

    NaN samples are skipped (vLLM has none in the counters we read, but a NaN must not
    poison a sum). Malformed lines are ignored: one odd line must not hide the rest.
    """
    out: dict[str, float] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        value = _number(match.group("value"))
        if value is None or math.isnan(value):
            continue
        out[match.group("name")] = out.get(match.group("name"), 0.0) + value
    return out


def parse_brpc_vars(text: str) -> dict[str, float]:
    """brpc ``/vars`` text (``name : value`` per line) -> {name: value}, numeric values only.

    brpc also prints strings (``process_cmdline``), percentiles lists and JSON-ish
    values for recorders; those are skipped.
    """
    out: dict[str, float] = {}
    for raw in text.splitlines():
        match = _BRPC_VAR.match(raw.strip())
        if match is None:
            continue
        value = _number(match.group("value"))
        if value is not None and not math.isnan(value):
            out[match.group("name")] = value
    return out


def _parse(text: str) -> dict[str, float]:
    # /vars and /brpc_metrics differ in form; either may be configured, so read both.
    if any(_BRPC_VAR.match(line.strip()) for line in text.splitlines()[:50]):
        return parse_brpc_vars(text)
    return parse_prometheus_text(text)


@dataclass(frozen=True)
class UniformSample:
    """The uniform values read from one scrape (None: the engine did not report it)."""

    generation_tokens: float | None = None
    prompt_tokens: float | None = None
    requests_running: float | None = None
    requests_waiting: float | None = None


def uniform_sample(engine: str, text: str) -> UniformSample:
    """Map an engine's metrics text to the uniform values (see the module table)."""
    names = ENGINE_METRICS[engine]
    values = _parse(text)
    fields: dict[str, float] = {}
    for field, sources in names.items():
        present = [values[s] for s in sources if s in values]
        if present:
            fields[field] = sum(present)
    return UniformSample(**fields)


def engine_scraper(url: str, timeout: float = 2.0) -> Callable[[], str | None]:
    """A callable that fetches ``url`` and returns its text, or None when the engine does not answer."""

    def scrape() -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                body: bytes = response.read()
                return body.decode("utf-8", errors="replace")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            log.debug("engine metrics at %s unavailable: %s", url, exc)
            return None

    return scrape


class UniformCollector:
    """A prometheus_client collector that scrapes the engine on every collect()."""

    def __init__(self, engine: str, scrape: Callable[[], str | None], info: Mapping[str, str] | None = None) -> None:
        if engine not in ENGINE_METRICS:
            raise ValueError(f"unknown engine {engine!r}; known: {sorted(ENGINE_METRICS)}")
        self.engine = engine
        self.scrape = scrape
        self.info = dict(info or {})

    def describe(self) -> Iterable[Metric]:
        """Nothing: registering must not scrape an engine that may still be loading."""
        return []

    def collect(self) -> Iterable[Metric]:
        """The uniform metrics from a fresh scrape of the engine."""
        text = self.scrape()
        up = GaugeMetricFamily("vlmr1_serving_engine_up", "1 when the engine's metrics endpoint answered.")
        up.add_metric([], 1.0 if text is not None else 0.0)
        yield up
        if self.info:
            labels = sorted(self.info)
            info = GaugeMetricFamily("vlmr1_serving_model_info", "The served checkpoint (value 1).", labels=labels)
            info.add_metric([self.info[k] for k in labels], 1.0)
            yield info
        if text is None:
            return
        sample = uniform_sample(self.engine, text)
        for field, (name, doc, is_counter) in UNIFORM.items():
            value = getattr(sample, field)
            if value is None:
                continue
            family: Metric = CounterMetricFamily(name, doc) if is_counter else GaugeMetricFamily(name, doc)
            family.add_metric([], value)  # type: ignore[attr-defined]
            yield family


def start_adapter(
    engine: str,
    engine_url: str,
    port: int,
    *,
    addr: str = "0.0.0.0",
    info: Mapping[str, str] | None = None,
) -> tuple[Any, Any]:
    """Serve the uniform metrics on ``addr:port`` in a daemon thread; returns (server, thread)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(UniformCollector(engine, engine_scraper(engine_url), info))
    server, thread = start_http_server(port, addr=addr, registry=registry)
    return server, thread
