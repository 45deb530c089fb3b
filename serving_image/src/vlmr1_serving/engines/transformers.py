"""The transformers engine: vlmr1's own small OpenAI-compatible server (:mod:`vlmr1_serving.hfserver`).

Why not ``transformers serve``: in transformers 5.24 it needs fastapi, uvicorn and
openai (none are vlmr1 dependencies), it has no Prometheus ``/metrics`` endpoint, and
it loads processors with ``AutoProcessor`` in a process that never imports vlmr1, so a
Qwen2.5-VL processor asks for a video processor that needs torchvision (which vlmr1's
CPU images must not have). The dev server runs the model with ``generate`` on CPU (or
one GPU), one request at a time, for development and tests, not for throughput.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vlmr1_serving.engines import Argv, Option, render_options

if TYPE_CHECKING:
    from vlmr1_core.api.vlmservice import VLMServiceSpec

__all__ = ["OPTIONS", "PYTHON", "RESERVED", "build"]

PYTHON = "python"
"""argv[0]; the launcher replaces it with its own interpreter (the same environment)."""

OPTIONS: dict[str, Option] = {
    "device": Option("--device", "str", "cpu (default), cuda or cuda:N"),
    "max-new-tokens": Option("--max-new-tokens", "int", "completion tokens when a request sets no max_tokens"),
    "seed": Option("--seed", "int", "torch seed set before every sampled generation"),
    "threads": Option("--threads", "int", "torch CPU threads"),
}

RESERVED: dict[str, str] = {
    "model": "model.uri",
    "served-model-name": "model.servedModelName",
    "limit-images-per-prompt": "engine.limitImagesPerPrompt",
    "max-model-len": "engine.maxModelLen",
    "dtype": "engine.dtype",
    "port": "spec.port",
    "host": "nothing (vlmr1 binds 0.0.0.0)",
}


def build(spec: VLMServiceSpec, model_path: str, port: int, served_name: str, *, host: str = "0.0.0.0") -> Argv:
    """``python -m vlmr1_serving.hfserver`` with the spec's settings."""
    eng = spec.engine
    argv = [PYTHON, "-m", "vlmr1_serving.hfserver", "--model", model_path, "--host", host, "--port", str(port)]
    argv += ["--served-model-name", served_name, "--limit-images-per-prompt", str(eng.limit_images_per_prompt)]
    if eng.max_model_len is not None:
        argv += ["--max-model-len", str(eng.max_model_len)]
    if eng.dtype is not None:
        argv += ["--dtype", eng.dtype]
    argv += render_options("transformers", eng.args, OPTIONS, style="separate", reserved=RESERVED)
    argv += list(eng.extra_args)
    notes = []
    if eng.tensor_parallel_size > 1:
        notes.append(
            f"engine.tensorParallelSize={eng.tensor_parallel_size} is not applied: the dev server uses one device"
        )
    # The checkpoint is local and verified: nothing may be fetched from a hub at run time.
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return Argv(argv, env, notes)
