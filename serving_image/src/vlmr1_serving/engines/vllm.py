"""vLLM (``vllm serve``) on NVIDIA GPUs, and vLLM on Ascend NPUs through the vllm-ascend plugin.

vllm-ascend is vLLM with a platform plugin: the command line is the same, only the
environment differs (which NPUs the process sees). The flags are those of ``vllm serve``
in vLLM 0.10 and later: ``--limit-mm-per-prompt`` takes JSON there, and engine booleans
are ``argparse.BooleanOptionalAction`` (``--enforce-eager`` / ``--no-enforce-eager``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from vlmr1_serving.engines import Argv, Option, render_options

if TYPE_CHECKING:
    from vlmr1_core.api.vlmservice import VLMServiceSpec

__all__ = ["OPTIONS", "RESERVED", "build_vllm", "build_vllm_ascend"]

#: ``engine.args`` vLLM accepts, by their command-line name without dashes.
OPTIONS: dict[str, Option] = {
    "gpu-memory-utilization": Option(
        "--gpu-memory-utilization", "float", "fraction of device memory for weights, activations and KV cache"
    ),
    "max-num-seqs": Option("--max-num-seqs", "int", "most sequences in one iteration (batch size)"),
    "max-num-batched-tokens": Option("--max-num-batched-tokens", "int", "most tokens in one iteration"),
    "quantization": Option("--quantization", "str", "quantization method of the weights (awq, gptq, fp8, ...)"),
    "kv-cache-dtype": Option("--kv-cache-dtype", "str", "KV cache dtype: auto, fp8, ..."),
    "block-size": Option("--block-size", "int", "tokens per KV cache block"),
    "swap-space": Option("--swap-space", "float", "CPU swap space per GPU in GiB"),
    "cpu-offload-gb": Option("--cpu-offload-gb", "float", "GiB of weights offloaded to CPU memory"),
    "enforce-eager": Option("--enforce-eager", "bool", "no CUDA graphs (less memory, slower)", negatable=True),
    "enable-prefix-caching": Option(
        "--enable-prefix-caching", "bool", "reuse KV cache of shared prompt prefixes", negatable=True
    ),
    "enable-chunked-prefill": Option(
        "--enable-chunked-prefill", "bool", "split long prefills into chunks", negatable=True
    ),
    "async-scheduling": Option("--async-scheduling", "bool", "overlap scheduling with execution", negatable=True),
    "seed": Option("--seed", "int", "random seed"),
    "trust-remote-code": Option("--trust-remote-code", "bool", "run code shipped with the checkpoint", negatable=True),
    "pipeline-parallel-size": Option("--pipeline-parallel-size", "int", "pipeline stages"),
    "data-parallel-size": Option("--data-parallel-size", "int", "data-parallel engine copies"),
    "max-logprobs": Option("--max-logprobs", "int", "most logprobs a request may ask for"),
    "generation-config": Option("--generation-config", "str", "auto, vllm, or a folder with generation_config.json"),
    "override-generation-config": Option("--override-generation-config", "json", "JSON overriding sampling defaults"),
    "chat-template": Option("--chat-template", "str", "chat template file or string"),
    "mm-processor-kwargs": Option(
        "--mm-processor-kwargs", "json", 'JSON for the multimodal processor, e.g. {"max_pixels": 1003520}'
    ),
    "mm-processor-cache-gb": Option("--mm-processor-cache-gb", "float", "GiB of processed-image cache (0: off)"),
    "scheduling-policy": Option("--scheduling-policy", "str", "fcfs or priority"),
    "tool-call-parser": Option("--tool-call-parser", "str", "tool call parser (hermes, ...)"),
    "enable-auto-tool-choice": Option("--enable-auto-tool-choice", "bool", "let the model choose tools"),
    "reasoning-parser": Option("--reasoning-parser", "str", "reasoning content parser"),
    "uvicorn-log-level": Option("--uvicorn-log-level", "str", "HTTP server log level"),
}

#: Options that are fields of the spec: setting them in args would give two values.
RESERVED: dict[str, str] = {
    "model": "model.uri",
    "served-model-name": "model.servedModelName",
    "tensor-parallel-size": "engine.tensorParallelSize",
    "max-model-len": "engine.maxModelLen",
    "dtype": "engine.dtype",
    "limit-mm-per-prompt": "engine.limitImagesPerPrompt",
    "port": "spec.port",
    "host": "nothing (vlmr1 binds 0.0.0.0 so the Service reaches the pod)",
}

#: No usage reports from inside a cluster.
BASE_ENV = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


def _argv(spec: VLMServiceSpec, model_path: str, port: int, served_name: str, engine: str, host: str) -> list[str]:
    eng = spec.engine
    argv = ["vllm", "serve", model_path, "--host", host, "--port", str(port)]
    argv += ["--served-model-name", served_name, "--tensor-parallel-size", str(eng.tensor_parallel_size)]
    if eng.max_model_len is not None:
        argv += ["--max-model-len", str(eng.max_model_len)]
    dtype = eng.dtype or ("float16" if spec.resources.accelerator == "ascend310p" else None)
    if dtype is not None:
        argv += ["--dtype", dtype]
    argv += ["--limit-mm-per-prompt", json.dumps({"image": eng.limit_images_per_prompt}, separators=(",", ":"))]
    argv += render_options(engine, eng.args, OPTIONS, style="separate", reserved=RESERVED)
    return argv + list(eng.extra_args)


def build_vllm(spec: VLMServiceSpec, model_path: str, port: int, served_name: str, *, host: str = "0.0.0.0") -> Argv:
    """``vllm serve`` on NVIDIA GPUs (the device plugin sets CUDA_VISIBLE_DEVICES)."""
    return Argv(_argv(spec, model_path, port, served_name, "vllm", host), dict(BASE_ENV))


def build_vllm_ascend(
    spec: VLMServiceSpec, model_path: str, port: int, served_name: str, *, host: str = "0.0.0.0"
) -> Argv:
    """``vllm serve`` on Ascend NPUs (vllm-ascend plugin).

    The Ascend device plugin mounts the replica's NPUs; inside the container they are
    logical devices 0..N-1, and ``ASCEND_RT_VISIBLE_DEVICES`` names them so the runtime
    uses exactly those (vLLM spreads tensor-parallel ranks over the visible devices).

    On the Atlas 300I Duo (``ascend310p``) vLLM runs in float16 (the 310P has no bfloat16;
    the spec refuses another ``engine.dtype``) and eager mode unless ``engine.args.enforce-eager`` says
    otherwise (vllm-ascend's 310P support began eager-only; later releases capture decode
    graphs), with VLM-R1's allocator setting from its 300I Duo guide.
    """
    devices = max(spec.resources.devices_per_replica, 1)
    on_310p = spec.resources.accelerator == "ascend310p"
    env = {
        **BASE_ENV,
        "ASCEND_RT_VISIBLE_DEVICES": ",".join(str(i) for i in range(devices)),
        # 910: vllm-ascend's recommendation, fewer fragmentation OOMs with many image sizes.
        # 310P: VLM-R1's (and vllm-ascend's 300I tutorial's) split cap for its smaller memory.
        "PYTORCH_NPU_ALLOC_CONF": "max_split_size_mb:256" if on_310p else "expandable_segments:True",
    }
    argv = _argv(spec, model_path, port, served_name, "vllm-ascend", host)
    if on_310p and "enforce-eager" not in spec.engine.args:
        argv.append("--enforce-eager")
    return Argv(argv, env)
