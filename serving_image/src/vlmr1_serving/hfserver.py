"""A small OpenAI-compatible server on transformers: the ``transformers`` engine (development).

``python -m vlmr1_serving.hfserver --model DIR --port 8000 --served-model-name NAME``

Endpoints: ``GET /health``, ``GET /v1/models``, ``POST /v1/chat/completions``
(non-streaming; text and ``image_url`` parts, images as ``data:`` URLs since the server
never reaches the network), ``GET /metrics`` (Prometheus text with the uniform
``vlmr1_serving_*`` names, so the metrics adapter maps them one to one).

Standard library HTTP server, one generation at a time (a lock; requests queued on it
count as waiting): ``generate`` on CPU is compute-bound, so concurrency would only
slow every request down. Why not ``transformers serve``: see
:mod:`vlmr1_serving.engines.transformers`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["ChatError", "Engine", "main", "make_server"]

log = logging.getLogger("vlmr1_serving.hfserver")

MAX_BODY = 32 << 20
"""Largest request body (images inline as base64)."""
DEFAULT_MAX_NEW_TOKENS = 256


class ChatError(Exception):
    """A request the server refuses, with its HTTP status and OpenAI error type."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


def decode_data_url(url: str) -> Any:
    """A ``data:image/...;base64,...`` URL -> an RGB PIL image."""
    from PIL import Image, UnidentifiedImageError

    if not url.startswith("data:"):
        raise ChatError(400, "image_url must be a data: URL (base64); this development server never fetches URLs")
    header, _, payload = url.partition(",")
    if ";base64" not in header:
        raise ChatError(400, "image_url data: URLs must be base64-encoded")
    try:
        raw = base64.b64decode(payload, validate=True)
        return Image.open(io.BytesIO(raw)).convert("RGB")
    except (binascii.Error, UnidentifiedImageError, OSError) as exc:
        raise ChatError(400, f"image_url is not a readable image: {exc}") from exc


def to_conversation(messages: Any, limit_images: int) -> tuple[list[dict[str, Any]], list[Any]]:
    """OpenAI messages -> (chat-template conversation with image placeholders, PIL images)."""
    if not isinstance(messages, list) or not messages:
        raise ChatError(400, "messages must be a non-empty list")
    conversation: list[dict[str, Any]] = []
    images: list[Any] = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ChatError(400, "each message needs a role and content")
        content = message.get("content")
        if isinstance(content, str):
            parts: list[dict[str, Any]] = [{"type": "text", "text": content}]
        elif isinstance(content, list):
            parts = []
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text":
                    parts.append({"type": "text", "text": str(part.get("text", ""))})
                elif kind == "image_url":
                    ref = part.get("image_url")
                    url = ref.get("url") if isinstance(ref, dict) else ref
                    if not isinstance(url, str):
                        raise ChatError(400, "image_url parts need a url")
                    images.append(decode_data_url(url))
                    parts.append({"type": "image"})
                else:
                    raise ChatError(400, f"unsupported content part type {kind!r} (text and image_url only)")
        else:
            raise ChatError(400, "message content must be a string or a list of parts")
        conversation.append({"role": message["role"], "content": parts})
    if len(images) > limit_images:
        raise ChatError(400, f"{len(images)} images in one request; at most {limit_images} allowed")
    return conversation, images


@dataclass
class Settings:
    model: str
    served_model_name: str
    limit_images_per_prompt: int = 4
    max_model_len: int | None = None
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    device: str = "cpu"
    dtype: str = "float32"
    seed: int | None = None


class Engine:
    """The loaded model, processor and metrics; :meth:`chat` answers one request."""

    def __init__(self, settings: Settings) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        # Registers vlmr1's processor classes (the builtin tiny models name them).
        import vlmr1_core.processors  # noqa: F401

        self.settings = settings
        self.torch = torch
        dtype = "auto" if settings.dtype == "auto" else getattr(torch, settings.dtype)
        self.model = AutoModelForImageTextToText.from_pretrained(settings.model, dtype=dtype)
        self.model.to(settings.device)  # type: ignore[arg-type]
        self.model.eval()  # type: ignore[no-untyped-call]
        self.processor = AutoProcessor.from_pretrained(settings.model)  # type: ignore[no-untyped-call]
        self.lock = threading.Lock()
        self.registry = CollectorRegistry()
        self.generated = Counter(
            "vlmr1_serving_generation_tokens", "Generated (completion) tokens.", registry=self.registry
        )
        self.prompt = Counter("vlmr1_serving_prompt_tokens", "Prompt tokens processed.", registry=self.registry)
        self.running = Gauge("vlmr1_serving_requests_running", "Requests being generated now.", registry=self.registry)
        self.waiting = Gauge("vlmr1_serving_requests_waiting", "Requests queued.", registry=self.registry)

    def _max_new_tokens(self, body: dict[str, Any], prompt_tokens: int) -> int:
        requested = body.get("max_completion_tokens", body.get("max_tokens"))
        if requested is None:
            wanted = self.settings.max_new_tokens
        elif isinstance(requested, int) and not isinstance(requested, bool) and requested >= 1:
            wanted = requested
        else:
            raise ChatError(400, "max_tokens must be a positive integer")
        limit = self.settings.max_model_len
        if limit is not None:
            if prompt_tokens >= limit:
                raise ChatError(400, f"the prompt has {prompt_tokens} tokens; the context is {limit}")
            wanted = min(wanted, limit - prompt_tokens)
        return wanted

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """One non-streaming chat completion."""
        if body.get("stream"):
            raise ChatError(400, "stream is not supported by the transformers development engine")
        model_name = body.get("model")
        if model_name not in (None, self.settings.served_model_name):
            raise ChatError(404, f"model {model_name!r} is not served here", "model_not_found")
        conversation, images = to_conversation(body.get("messages"), self.settings.limit_images_per_prompt)
        text = self.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        inputs = self.processor(text=[text], images=images or None, return_tensors="pt").to(self.settings.device)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        max_new = self._max_new_tokens(body, prompt_tokens)
        temperature = float(body.get("temperature", 1.0) or 0.0)
        options: dict[str, Any] = {"max_new_tokens": max_new, "do_sample": temperature > 0}
        if temperature > 0:
            options |= {"temperature": temperature, "top_p": float(body.get("top_p", 1.0))}
        self.waiting.inc()
        with self.lock:
            self.waiting.dec()
            self.running.inc()
            try:
                seed = body.get("seed", self.settings.seed)
                if isinstance(seed, int):
                    self.torch.manual_seed(seed)
                with self.torch.inference_mode():
                    output = self.model.generate(**inputs, **options)
            finally:
                self.running.dec()
        new_tokens = output[0, prompt_tokens:]
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        finish = "stop" if len(new_tokens) and int(new_tokens[-1]) in eos_ids else "length"
        completion = self.processor.decode(new_tokens, skip_special_tokens=True)
        self.prompt.inc(prompt_tokens)
        self.generated.inc(len(new_tokens))
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.settings.served_model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": completion}, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(new_tokens),
                "total_tokens": prompt_tokens + len(new_tokens),
            },
        }

    def models(self) -> dict[str, Any]:
        """The /v1/models listing."""
        return {
            "object": "list",
            "data": [{"id": self.settings.served_model_name, "object": "model", "created": 0, "owned_by": "vlmr1"}],
        }


class Handler(BaseHTTPRequestHandler):
    """Routes requests to the server's :class:`Engine`."""

    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode())

    def _error(self, status: int, message: str, kind: str) -> None:
        self._json(status, {"error": {"message": message, "type": kind, "code": status}})

    def do_GET(self) -> None:
        """Health, model list and metrics."""
        engine = self.server.engine
        if self.path == "/health":
            self._send(200, b"ok", "text/plain")
        elif self.path == "/v1/models":
            self._json(200, engine.models())
        elif self.path == "/metrics":
            self._send(200, generate_latest(engine.registry), CONTENT_TYPE_LATEST)
        else:
            self._error(404, f"no route {self.path}", "not_found")

    def do_POST(self) -> None:
        """Chat completions."""
        if self.path != "/v1/chat/completions":
            self._error(404, f"no route {self.path}", "not_found")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY:
            self._error(400 if length <= 0 else 413, "a JSON body of at most 32 MiB is required", "invalid_request")
            return
        try:
            body = json.loads(self.rfile.read(length))
            if not isinstance(body, dict):
                raise ChatError(400, "the body must be a JSON object")
            self._json(200, self.server.engine.chat(body))
        except (ValueError, TypeError) as exc:  # bad JSON, or a field of the wrong type
            self._error(400, f"invalid request: {exc}", "invalid_request_error")
        except ChatError as exc:
            self._error(exc.status, str(exc), exc.kind)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], engine: Engine) -> None:
        super().__init__(address, Handler)
        self.engine = engine


def make_server(engine: Engine, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server bound to ``host:port`` (not yet serving)."""
    return _Server((host, port), engine)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m vlmr1_serving.hfserver", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint folder (model and processor)")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", required=True)
    parser.add_argument("--limit-images-per-prompt", type=int, default=4)
    parser.add_argument("--max-model-len", type=int)
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16", "auto"])
    parser.add_argument("--seed", type=int)
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Load the model, then serve until SIGTERM/SIGINT."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    settings = Settings(
        model=args.model,
        served_model_name=args.served_model_name,
        limit_images_per_prompt=args.limit_images_per_prompt,
        max_model_len=args.max_model_len,
        max_new_tokens=args.max_new_tokens,
        device=args.device,
        dtype=args.dtype,
        seed=args.seed,
    )
    engine = Engine(settings)
    server = make_server(engine, args.host, args.port)
    log.info("serving %s as %r on http://%s:%d", args.model, args.served_model_name, args.host, args.port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    import signal

    # SIGTERM (kubelet, the launcher) ends serve_forever like Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
