"""Generation through an OpenAI-compatible chat endpoint: vLLM, xllm, vllm-ascend, the CPU dev engine.

Each sample becomes one ``POST <base>/chat/completions`` carrying exactly the conversation the
in-process path gives the processor's chat template: the row's ``prompt`` messages with each
``{"type": "image"}`` placeholder replaced, in order, by an ``image_url`` part holding the
row's decoded image as a PNG ``data:`` URL. PNG is lossless, so the server decodes the very
pixels the in-process path used (already RGB, already upscaled where VLM-R1 upscales small
images); sending the original file instead would let the server's own decoding (RGBA
compositing, for one) change them. Decoding is greedy (``temperature: 0``), as VLM-R1 and
the in-process path evaluate.

Standard library only (``urllib`` and a thread pool): at most ``concurrency`` requests are in
flight; connection errors, timeouts, 429 and 5xx answers are retried with exponential
backoff (honouring ``Retry-After``); any other 4xx stops the evaluation with the server's
message and the sample it was about, since every later request would fail the same way.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from vlmr1_core.errors import UserError

__all__ = ["ChatEndpoint", "EndpointError", "chat_messages", "image_data_url", "normalize_base_url"]

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
"""Answers worth another try: overload, rate limits, a restarting or scaling-up server."""


class EndpointError(UserError, RuntimeError):
    """The endpoint refused a request, or stayed unreachable through every retry."""


def normalize_base_url(url: str) -> str:
    """The OpenAI base URL (ending in ``/v1``) of what a user passes: a host, a ``/v1`` base
    (a VLMService's ``status.endpoint``) or the full chat-completions URL.

    >>> normalize_base_url("http://rec.ml.svc:8000/v1")
    'http://rec.ml.svc:8000/v1'
    >>> normalize_base_url("http://127.0.0.1:8000/")
    'http://127.0.0.1:8000/v1'
    >>> normalize_base_url("https://gw.example/api/v1/chat/completions")
    'https://gw.example/api/v1'
    """
    if not url.startswith(("http://", "https://")):
        raise EndpointError(f"{url!r} is not an http(s) URL", field="--endpoint", fix="e.g. http://127.0.0.1:8000/v1")
    base = url.rstrip("/").removesuffix("/chat/completions").rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"


def image_data_url(image: Any) -> str:
    """A PIL image as a lossless ``data:image/png;base64,…`` URL."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def chat_messages(prompt: Sequence[Mapping[str, Any]], images: Sequence[Any]) -> list[dict[str, Any]]:
    """OpenAI chat messages of a row's prompt: image placeholders become data-URL parts, in order.

    >>> chat_messages([{"role": "user", "content": [{"type": "text", "text": "hi"}]}], [])
    [{'role': 'user', 'content': [{'type': 'text', 'text': 'hi'}]}]
    """
    pending = list(images)
    messages: list[dict[str, Any]] = []
    for message in prompt:
        content = message["content"]
        if isinstance(content, str):
            messages.append({"role": message["role"], "content": content})
            continue
        parts: list[dict[str, Any]] = []
        for part in content:
            if part.get("type") == "image":
                if not pending:
                    raise ValueError("the prompt has more image placeholders than the row has images")
                parts.append({"type": "image_url", "image_url": {"url": image_data_url(pending.pop(0))}})
            else:
                parts.append(dict(part))
        messages.append({"role": message["role"], "content": parts})
    if pending:
        raise ValueError(f"{len(pending)} image(s) of the row have no placeholder in its prompt")
    return messages


@dataclass
class ChatEndpoint:
    """A chat-completions endpoint and how to talk to it."""

    url: str
    """What the user passed; :attr:`base` is its ``/v1`` base."""
    model: str | None = None
    """The served model name; None: the only one ``GET /v1/models`` lists."""
    concurrency: int = 8
    """Requests in flight at once."""
    retries: int = 5
    """Further tries of a request after a transient failure."""
    timeout: float = 600.0
    """Seconds one request may take (a long generation on a busy server)."""
    api_key: str | None = None
    """Sent as ``Authorization: Bearer``, for gateways and ``vllm serve --api-key``."""
    backoff: float = 1.0
    """First retry delay in seconds, doubled per retry (with jitter), at most 30 s."""
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    base: str = field(init=False)

    def __post_init__(self) -> None:
        self.base = normalize_base_url(self.url)

    # -- HTTP ---------------------------------------------------------------------------------

    def _request(self, path: str, body: Mapping[str, Any] | None, what: str) -> Any:
        """JSON of one request, retried on transient failures; EndpointError otherwise."""
        url = self.base + path
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode() if body is not None else None
        last = ""
        for attempt in range(self.retries + 1):
            delay = min(30.0, self.backoff * 2**attempt) * (0.5 + random.random() / 2)
            request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                message = _error_message(exc)
                if exc.code not in RETRY_STATUS:
                    raise EndpointError(
                        f"{url} answered {exc.code} for {what}: {message}",
                        fix=_fix_for(exc.code),
                    ) from exc
                last = f"{exc.code} {message}"
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
                if retry_after and retry_after.strip().isdigit():
                    delay = min(60.0, float(retry_after))
            except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
                # URLError: refused, DNS; HTTPException: a connection cut mid-answer (a restarting pod).
                last = str(getattr(exc, "reason", exc))
            except json.JSONDecodeError as exc:
                raise EndpointError(f"{url} answered {what} with something that is not JSON: {exc}") from exc
            if attempt < self.retries:
                self.sleep(delay)
        raise EndpointError(
            f"{url} failed {self.retries + 1} times for {what}; last: {last}",
            fix="check that the server is up and reachable (curl its /v1/models), or raise --retries",
        )

    def resolve_model(self) -> str:
        """The model name to send: the given one, else the endpoint's only model."""
        if self.model:
            return self.model
        listing = self._request("/models", None, "the model list")
        names = (
            [m.get("id") for m in listing.get("data", []) if isinstance(m, dict)] if isinstance(listing, dict) else []
        )
        if len(names) != 1:
            raise EndpointError(
                f"{self.base}/models lists {len(names)} models ({', '.join(map(str, names)) or 'none'})",
                field="--model",
                fix="name the one to evaluate with --model",
            )
        self.model = str(names[0])
        return self.model

    def complete(self, messages: list[dict[str, Any]], max_tokens: int, what: str) -> str:
        """The greedy completion of one conversation."""
        body = {
            "model": self.resolve_model(),
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "n": 1,
            "stream": False,
        }
        reply = self._request("/chat/completions", body, what)
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise EndpointError(f"{self.base}/chat/completions answered {what} without choices[0].message") from exc
        return content if isinstance(content, str) else ""

    # -- a dataset ----------------------------------------------------------------------------

    def generate(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        max_new_tokens: int,
        on_done: Callable[[int], None] | None = None,
    ) -> list[str]:
        """Every row's completion, in row order, with at most ``concurrency`` requests in flight."""
        self.resolve_model()  # once, before the pool: a wrong name fails fast
        results: list[str | None] = [None] * len(rows)
        stop = threading.Event()  # after a failure, queued samples are not sent

        def one(index: int) -> None:
            if stop.is_set():
                return
            row = rows[index]
            what = f"sample {row.get('source') or index}"
            try:
                try:
                    messages = chat_messages(row["prompt"], row.get("images") or [])
                except ValueError as exc:
                    raise EndpointError(f"{what}: {exc}") from exc
                results[index] = self.complete(messages, max_new_tokens, what)
            except BaseException:
                stop.set()
                raise
            if on_done is not None:
                on_done(1)

        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            futures = [pool.submit(one, i) for i in range(len(rows))]
            wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in futures if f.done() and f.exception() is not None), None)
            if failed is not None:
                for future in futures:
                    future.cancel()
                raise failed.exception()  # type: ignore[misc]
        return [r if r is not None else "" for r in results]


def _error_message(exc: urllib.error.HTTPError) -> str:
    """The server's own words: OpenAI's ``{"error": {"message": …}}``, vLLM's ``{"message": …}``, or the text."""
    try:
        raw = exc.read().decode("utf-8", "replace")
    except OSError:
        return exc.reason if isinstance(exc.reason, str) else ""
    try:
        body = json.loads(raw)
    except ValueError:
        return raw.strip()[:500]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if body.get("message"):
            return str(body["message"])
    return raw.strip()[:500]


def _fix_for(status: int) -> str:
    if status in (401, 403):
        return "pass the server's API key with --api-key (or VLMR1_ENDPOINT_API_KEY)"
    if status == 404:
        return "check the URL (the OpenAI base ends in /v1) and --model (GET /v1/models lists the served names)"
    return "the request is refused as sent; fix what the message names (e.g. lower --max-new-tokens)"
