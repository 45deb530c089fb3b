"""JD's xllm engine on Ascend NPUs: a C++ binary configured with gflags.

Flag names follow xllm's ``xllm/core/common/global_flags.cpp`` and its CLI reference
(``docs/en/cli_reference.md``): ``--model``, ``--devices=npu:0,npu:1`` (one process
drives every device it is given), ``--port`` (the brpc server, which also serves the
OpenAI HTTP API and brpc's ``/vars``), ``--backend=vlm`` (multimodal), ``--model_id``
(the served name), ``--limit_image_per_prompt``, ``--block_size``,
``--enable_prefix_cache``, ``--max_tokens_per_batch``. ``engine.args`` keys are the
flag names with dashes (``block-size`` -> ``--block_size``), like every engine's.

gflags booleans are always written ``--flag=true`` / ``--flag=false``: several default to
true (prefix cache, chunked prefill), so ``false`` must be expressible, and gflags reads
a separate ``false`` word as a positional argument.

xllm has no context-length flag (it sizes the KV cache from memory), so
``engine.maxModelLen`` is reported in :attr:`Argv.notes` and not applied; so is ``engine.dtype``
(xllm runs the checkpoint's dtype).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vlmr1_serving.engines import Argv, Option, OptionType, render_options

if TYPE_CHECKING:
    from vlmr1_core.api.vlmservice import VLMServiceSpec

__all__ = ["BINARY", "OPTIONS", "RESERVED", "build"]

BINARY = "xllm"
"""The engine executable, looked up on PATH (the serving image links it there)."""


def _opt(name: str, type_: OptionType, doc: str) -> Option:
    return Option("--" + name.replace("-", "_"), type_, doc)


#: ``engine.args`` xllm accepts.
OPTIONS: dict[str, Option] = {
    "block-size": _opt("block-size", "int", "tokens per KV cache block (default 128)"),
    "enable-prefix-cache": _opt("enable-prefix-cache", "bool", "reuse KV cache of shared prefixes (default true)"),
    "max-tokens-per-batch": _opt("max-tokens-per-batch", "int", "most tokens computed per step"),
    "max-seqs-per-batch": _opt("max-seqs-per-batch", "int", "most sequences computed per step (default 256)"),
    "max-memory-utilization": _opt(
        "max-memory-utilization", "float", "fraction of device memory for weights and KV cache (default 0.9)"
    ),
    "max-cache-size": _opt("max-cache-size", "int", "KV cache bytes (0: from free memory)"),
    "enable-chunked-prefill": _opt("enable-chunked-prefill", "bool", "split long prefills (default true)"),
    "max-tokens-per-chunk-for-prefill": _opt("max-tokens-per-chunk-for-prefill", "int", "prefill chunk size"),
    "enable-schedule-overlap": _opt("enable-schedule-overlap", "bool", "asynchronous scheduling"),
    "prefill-scheduling-memory-usage-threshold": _opt(
        "prefill-scheduling-memory-usage-threshold", "float", "KV usage that pauses new prefills (default 0.95)"
    ),
    "communication-backend": _opt("communication-backend", "str", "hccl or lccl"),
    "max-concurrent-requests": _opt("max-concurrent-requests", "int", "rate limit on requests in flight (0: none)"),
    "num-threads": _opt("num-threads", "int", "brpc server threads"),
    "num-request-handling-threads": _opt("num-request-handling-threads", "int", "request handling threads"),
    "num-response-handling-threads": _opt("num-response-handling-threads", "int", "response handling threads"),
    "enable-shm": _opt("enable-shm", "bool", "shared memory between the engine's processes"),
    "enable-acl-graph": _opt("enable-acl-graph", "bool", "ACL graph execution for decode"),
    "task": _opt("task", "str", "generate or embed"),
    "tool-call-parser": _opt("tool-call-parser", "str", "tool call parser (qwen25, ...)"),
}

RESERVED: dict[str, str] = {
    "model": "model.uri",
    "model-id": "model.servedModelName",
    "devices": "resources.devicesPerReplica and engine.tensorParallelSize",
    "port": "spec.port",
    "backend": "nothing (vlmr1 serves vision-language models: --backend=vlm)",
    "limit-image-per-prompt": "engine.limitImagesPerPrompt",
}


def build(spec: VLMServiceSpec, model_path: str, port: int, served_name: str, *, host: str = "0.0.0.0") -> Argv:
    """The xllm command line: one process over ``engine.tensorParallelSize`` NPUs (``host`` is unused)."""
    del host  # xllm's --host is the device RPC address, not an HTTP bind address
    eng = spec.engine
    devices = ",".join(f"npu:{i}" for i in range(eng.tensor_parallel_size))
    argv = [
        BINARY,
        f"--model={model_path}",
        f"--devices={devices}",
        f"--port={port}",
        "--backend=vlm",
        f"--model_id={served_name}",
        f"--limit_image_per_prompt={eng.limit_images_per_prompt}",
    ]
    argv += render_options("xllm", eng.args, OPTIONS, style="equals", reserved=RESERVED)
    argv += list(eng.extra_args)
    visible = max(spec.resources.devices_per_replica, eng.tensor_parallel_size)
    env = {"ASCEND_RT_VISIBLE_DEVICES": ",".join(str(i) for i in range(visible))}
    notes = []
    if eng.max_model_len is not None:
        notes.append(
            f"engine.maxModelLen={eng.max_model_len} is not applied: xllm has no context-length flag "
            "(bound the batch with engine.args.max-tokens-per-batch)"
        )
    if eng.dtype is not None:
        notes.append(f"engine.dtype={eng.dtype} is not applied: xllm has no dtype flag (it runs the checkpoint's)")
    return Argv(argv, env, notes)
