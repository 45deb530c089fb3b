"""GRPO at Qwen2.5-VL-3B's size on one GPU: vlmr1's trainer beside a bare TRL GRPOTrainer.

    python bench/gpu_step.py --out results/          # on one H200: about 6 minutes
    python bench/gpu_step.py --size tiny --out /tmp/b  # the same code path on a CPU, about a minute

Builds Qwen2.5-VL-3B's architecture from its published configuration with random bf16
weights (bench/qwen2_5_vl_3b.py: no hub needed) and REC samples with 448x448 images, then
trains, in separate processes, for full fine-tuning and for LoRA (r 64, alpha 128, language
model only, gradient checkpointing, as VLM-R1's LoRA script):

* vlmr1: ``vlmr1_trainer.train.train`` on a TrainerConfig, with the progress reporting a pod
  has (metrics.jsonl, the progress line) and the checkpoint layer;
* bare TRL: ``GRPOTrainer(model=<folder>, ...)`` as TRL documents it, rows in a
  ``datasets.Dataset``, a GRPOConfig with the same values, the same reward functions.

Same shape on both sides: 8 generations of one prompt per step (per-device batch 8, no
accumulation), completions of up to 256 tokens (a random model rarely stops early), beta
0.04 (so a reference forward pass), temperature 0.9, bf16, sdpa attention. Each process
times ``--steps`` steps after ``--warmup`` from one step's start to the next (logging and
callbacks count), then stops; the effective GRPOConfig values of the two sides are
compared and any difference is printed. Reported per run: s/step, generated tokens/s,
peak GPU memory (``torch.cuda.max_memory_allocated`` from the first step on) and MFU.

MFU = model FLOPs per step / (s/step x peak bf16 FLOP/s, 989.4e12 for an H100/H200 SXM).
Model FLOPs count matrix multiplies only (2 per multiply-add) and no recomputation. One
forward pass of a sequence of P prompt and G completion tokens over an image of I patches
costs F = 2 N_body (P + G) + 2 N_head G + 2 N_vit I + 2 N_merger I / 4, where N_body is the
language model's parameters without embeddings, N_head its output projection (logits are
computed for completion tokens only), N_vit the vision blocks' and N_merger the 2x2
merger's. A step costs one F per sequence to generate (prefill plus decoding with a KV
cache), one for the reference model (beta > 0), and 3 F to train in full fine-tuning
(backward = twice the forward) or 2 F_text + F_vision with LoRA (frozen weights need
activation gradients only; the frozen vision tower needs none). Attention's score and
value products (about 1.5% at these lengths) are left out.

Then ``vlmr1 eval``'s loader and evaluation loop generate greedily at the same shape
(batch 8, 256 new tokens) and report samples/s and tokens/s.

Results: a table on stdout, ``OUT/results.json`` and ``OUT/results.md``; each process's
log in ``OUT/`` too. A failed process is reported and the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PEAK_BF16_FLOPS = {"H200": 989.4e12, "H100": 989.4e12}
"""Dense bf16 tensor-core peak (SXM datasheets); MFU is not reported for other devices."""
COMPARED_ARGS = (
    "num_generations",
    "max_completion_length",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "steps_per_generation",
    "generation_batch_size",
    "num_iterations",
    "beta",
    "epsilon",
    "loss_type",
    "temperature",
    "top_p",
    "learning_rate",
    "max_grad_norm",
    "bf16",
    "gradient_checkpointing",
    "use_vllm",
    "seed",
)
"""GRPOConfig values that shape a step's work: they must be equal on both sides."""


# -- the parent: build, run each measurement in its own process, report ---------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["3b", "tiny"], default="3b", help="model size (tiny: a CPU dry run)")
    parser.add_argument("--modes", default="full,lora", help="fine-tuning modes, comma-separated (full, lora)")
    parser.add_argument("--trainers", default="vlmr1,trl", help="which sides to run (vlmr1, trl)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per run (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    parser.add_argument("--generations", type=int, default=8, help="completions per prompt (default 8)")
    parser.add_argument("--completion-length", type=int, default=256, help="max completion tokens (default 256)")
    parser.add_argument("--image-side", type=int, default=448, help="image width and height (default 448)")
    parser.add_argument("--eval-samples", type=int, default=16, help="samples timed in the eval run (default 16)")
    parser.add_argument("--workdir", type=Path, help="model and data folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    parser.add_argument("--logs", type=Path, help="folder for each process's log (default: OUT)")
    parser.add_argument("--child-timeout", type=int, default=300, help="seconds before a run is stopped")
    parser.add_argument(
        "--no-smoke", dest="smoke", action="store_false", help="skip `vlmr1 run` of the tiny builtin on the device"
    )
    opts = parser.parse_args()
    opts.out.mkdir(parents=True, exist_ok=True)
    opts.logs = opts.logs or opts.out
    opts.logs.mkdir(parents=True, exist_ok=True)
    workdir = opts.workdir or Path(tempfile.mkdtemp(prefix="vlmr1-gpu-bench-", dir=_fast_tmp()))
    started = time.monotonic()
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(opts).items()}
    report: dict[str, Any] = {"environment": environment(), "settings": settings | {"workdir": str(workdir)}}
    print(json.dumps(report["environment"], indent=1), flush=True)

    build = run_child({"kind": "build", "size": opts.size, "workdir": str(workdir), "opts": _child_opts(opts)}, opts)
    report["model"] = build
    if build.get("ok"):
        report["runs"] = []
        for mode in opts.modes.split(","):
            for trainer in opts.trainers.split(","):
                task = {"kind": "train", "trainer": trainer, "mode": mode, "workdir": str(workdir)}
                result = run_child(task | {"opts": _child_opts(opts)}, opts) | {"trainer": trainer, "mode": mode}
                report["runs"].append(summarise(result, build, opts))
                print(_row(report["runs"][-1]), flush=True)
                save(report, opts, started)  # what is done survives a later failure or a time limit
        report["eval"] = run_child({"kind": "eval", "workdir": str(workdir), "opts": _child_opts(opts)}, opts)
        save(report, opts, started)
    if opts.smoke:
        report["smoke"] = run_child({"kind": "smoke", "workdir": str(workdir), "opts": _child_opts(opts)}, opts)
    if opts.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return finish(report, opts, started)


def _fast_tmp() -> str | None:
    # Model files are read by every run: keep them in memory when the machine has room.
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 40 * 2**30:
        return str(shm)
    return None


def _child_opts(opts: argparse.Namespace) -> dict[str, Any]:
    keys = ("size", "steps", "warmup", "generations", "completion_length", "image_side", "eval_samples")
    return {k: getattr(opts, k) for k in keys}


def environment() -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "flash-attn"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    env: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "python": platform.python_version(), **versions}
    smi = shutil.which("nvidia-smi")
    if smi:
        query = "--query-gpu=name,memory.total,driver_version"
        out = subprocess.run([smi, query, "--format=csv,noheader"], capture_output=True, text=True, check=False)
        env["gpu"] = out.stdout.strip()
    return env


def run_child(task: dict[str, Any], opts: argparse.Namespace) -> dict[str, Any]:
    """Run one measurement in a fresh process (clean GPU memory, own peak); its JSON result or the failure."""
    name = "-".join(str(task[k]) for k in ("kind", "trainer", "mode") if k in task)
    log = opts.logs / f"{name}.log"
    result_file = Path(task["workdir"]) / f"{name}.result.json"
    result_file.unlink(missing_ok=True)
    task["result"] = str(result_file)
    env = os.environ | {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    began = time.monotonic()
    with log.open("w") as handle:
        try:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(task)],
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=opts.child_timeout,
                check=False,
            )
            code: int | str = proc.returncode
        except subprocess.TimeoutExpired:
            code = f"timeout after {opts.child_timeout} s"
    wall = time.monotonic() - began
    if result_file.is_file():
        return json.loads(result_file.read_text()) | {"ok": True, "wall_s": wall}
    tail = log.read_text(errors="replace").splitlines()[-25:]
    print(f"{name}: failed ({code}); last lines of {log}:\n  " + "\n  ".join(tail), flush=True)
    return {"ok": False, "exit": code, "wall_s": wall, "log_tail": tail}


def forward_flops(model: dict[str, Any], prompt: float, completion: float, patches: float) -> tuple[float, float]:
    """(text, vision) FLOPs of one forward pass of one sequence (the module docstring's F)."""
    text = 2 * model["language_body"] * (prompt + completion) + 2 * model["lm_head"] * completion
    merged = patches / model["merge_size"] ** 2
    vision = 2 * model["vision_blocks"] * patches + 2 * model["vision_merger"] * merged
    return text, vision


def step_flops(model: dict[str, Any], mode: str, beta: float, sequences: list[tuple[float, float, float]]) -> float:
    """Model FLOPs of one GRPO step over ``(prompt, completion, patches)`` per sequence."""
    total = 0.0
    for prompt, completion, patches in sequences:
        text, vision = forward_flops(model, prompt, completion, patches)
        generate = text + vision
        reference = text + vision if beta > 0 else 0.0
        train = 3 * (text + vision) if mode == "full" else 2 * text + vision
        total += generate + reference + train
    return total


def summarise(result: dict[str, Any], build: dict[str, Any], opts: argparse.Namespace) -> dict[str, Any]:
    """Median s/step, tokens/s, peak memory and MFU of one training run."""
    if not result.get("ok"):
        return result
    times = result["step_times"]
    per_step = statistics.median(times)
    steps = result["steps"]
    completions = [s["completion_tokens"] for s in steps]
    prompts = [s["prompt_tokens"] for s in steps]
    sequences = result["sequences_per_step"]
    generated = statistics.median(completions)
    patches = (opts.image_side // build["patch_size"]) ** 2
    flops = statistics.median(
        step_flops(build, result["mode"], result["args"]["beta"], [(p / sequences, c / sequences, patches)] * sequences)
        for p, c in zip(prompts, completions, strict=True)
    )
    peak = next((flops for name, flops in PEAK_BF16_FLOPS.items() if name in result.get("device", "")), None)
    return result | {
        "s_per_step": per_step,
        "generated_tokens_per_step": generated,
        "prompt_tokens_per_sequence": statistics.median(prompts) / sequences,
        "generated_tokens_per_s": generated / per_step,
        "model_tflops_per_step": flops / 1e12,
        "mfu": flops / per_step / peak if peak else None,
    }


def _row(run: dict[str, Any]) -> str:
    if not run.get("ok"):
        return f"{run['mode']:<5} {run['trainer']:<6} FAILED ({run.get('exit')})"
    mfu = f"{run['mfu'] * 100:5.1f}%" if run.get("mfu") is not None else "  n/a"
    return (
        f"{run['mode']:<5} {run['trainer']:<6} {run['s_per_step']:8.3f} s/step  {run['generated_tokens_per_s']:8.1f} "
        f"gen tok/s  peak {run['peak_memory_gib']:7.2f} GiB  MFU {mfu}  ({len(run['step_times'])} timed steps)"
    )


def compare(runs: list[dict[str, Any]]) -> list[str]:
    """Per mode: vlmr1 / bare TRL ratios, and any GRPOConfig value that differs between the sides."""
    lines = []
    for mode in dict.fromkeys(r["mode"] for r in runs):
        sides = {r["trainer"]: r for r in runs if r["mode"] == mode and r.get("ok")}
        if {"vlmr1", "trl"} - sides.keys():
            lines.append(f"{mode}: no ratio (a side failed or was not run)")
            continue
        ours, bare = sides["vlmr1"], sides["trl"]
        differ = {
            k: (ours["args"].get(k), bare["args"].get(k))
            for k in COMPARED_ARGS
            if ours["args"].get(k) != bare["args"].get(k)
        }
        memory = ours["peak_memory_gib"] / bare["peak_memory_gib"] if bare["peak_memory_gib"] else float("nan")
        lines.append(
            f"{mode}: vlmr1 / bare TRL: step time {ours['s_per_step'] / bare['s_per_step']:.3f} (target <= 1.05), "
            f"peak memory {memory:.3f} (target <= 1.05)"
            + (f"; SETTINGS DIFFER: {differ}" if differ else "; settings equal")
        )
    return lines


def save(report: dict[str, Any], opts: argparse.Namespace, started: float) -> str:
    report["wall_s"] = time.monotonic() - started
    runs = report.get("runs", [])
    report["comparison"] = compare(runs) if runs else []
    (opts.out / "results.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = markdown(report)
    (opts.out / "results.md").write_text(text)
    return text


def finish(report: dict[str, Any], opts: argparse.Namespace, started: float) -> int:
    print("\n" + save(report, opts, started), flush=True)
    parts = [report.get("model", {}), *report.get("runs", []), report.get("eval", {})]
    if opts.smoke:
        parts.append(report.get("smoke", {}))
    return 0 if all(part.get("ok") for part in parts) else 1


def markdown(report: dict[str, Any]) -> str:
    env, model = report["environment"], report.get("model", {})
    lines = [
        f"device: {env.get('gpu') or 'cpu'}; date {env['date']}; python {env['python']}, torch {env['torch']}, "
        f"transformers {env['transformers']}, trl {env['trl']}, peft {env['peft']}, flash-attn {env['flash-attn']}",
        f"model: {report['settings']['size']} ({model.get('parameters', 0) / 1e9:.2f} B parameters), "
        f"wall time {report['wall_s']:.0f} s",
        "",
        "| mode | trainer | s/step | generated tokens/s | peak GPU memory (GiB) | MFU | model TFLOP/step |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in report.get("runs", []):
        if not run.get("ok"):
            lines.append(f"| {run['mode']} | {run['trainer']} | failed ({run.get('exit')}) | | | | |")
            continue
        mfu = f"{run['mfu'] * 100:.1f}%" if run.get("mfu") is not None else "n/a"
        lines.append(
            f"| {run['mode']} | {run['trainer']} | {run['s_per_step']:.3f} | {run['generated_tokens_per_s']:.1f} | "
            f"{run['peak_memory_gib']:.2f} | {mfu} | {run['model_tflops_per_step']:.1f} |"
        )
    lines += ["", *report.get("comparison", [])]
    evaluation = report.get("eval", {})
    if evaluation.get("ok"):
        lines.append(
            f"vlmr1 eval (greedy, batch {evaluation['batch_size']}, {evaluation['max_new_tokens']} new tokens): "
            f"{evaluation['samples_per_s']:.2f} samples/s, {evaluation['tokens_per_s']:.1f} tokens/s over "
            f"{evaluation['samples']} samples, peak {evaluation['peak_memory_gib']:.2f} GiB"
        )
    elif evaluation:
        lines.append(f"vlmr1 eval: failed ({evaluation.get('exit')})")
    smoke = report.get("smoke")
    if smoke is not None:
        outcome = "passed" if smoke.get("ok") else f"FAILED ({smoke.get('exit')})"
        lines.append(f"vlmr1 run smoke (tiny builtin; freezeVision + gradient checkpointing, resume; LoRA): {outcome}")
    return "\n".join(lines) + "\n"


# -- the children: one measurement each ------------------------------------------------------


def child(task: dict[str, Any]) -> None:
    sys.path.insert(0, str(BENCH))
    import logging

    logging.basicConfig(level=logging.WARNING)
    {"build": child_build, "train": child_train, "eval": child_eval, "smoke": child_smoke}[task["kind"]](task)


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def _max_rss_gib() -> float:
    # A CPU dry run reports the process's peak resident memory instead of the GPU's.
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _write(task: dict[str, Any], result: dict[str, Any]) -> None:
    path = Path(task["result"])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str))
    tmp.replace(path)


def child_build(task: dict[str, Any]) -> None:
    import qwen2_5_vl_3b as model_facts

    workdir, opts = Path(task["workdir"]), task["opts"]
    began = time.monotonic()
    described = model_facts.build_model_dir(workdir / "model", opts["size"], _device())
    count = max(64, opts["eval_samples"] + 8)
    model_facts.write_rec_data(REPO / "examples" / "data" / "rec-shapes", workdir / "data", opts["image_side"], count)
    _write(task, described | {"build_s": time.monotonic() - began})


def trainer_config(task: dict[str, Any]) -> Any:
    """The TrainerConfig both sides are measured with (bare TRL copies its values)."""
    from vlmr1_core.config import TrainerConfig

    workdir, opts, mode = Path(task["workdir"]), task["opts"], task["mode"]
    on_gpu = _device() == "cuda"
    finetuning: dict[str, Any] = {"mode": "full"} if mode == "full" else {"mode": "lora", "lora": {}}
    return TrainerConfig.model_validate(
        {
            "model": {"uri": str(workdir / "model"), "family": "qwen2.5-vl"},
            "task": "rec",
            "datasets": [{"jsonl": str(workdir / "data" / "train.jsonl")}],
            "rewards": [{"name": "rec_iou"}, {"name": "rec_format"}],
            "finetuning": finetuning,
            "grpo": {"numGenerations": opts["generations"], "maxCompletionLength": opts["completion_length"]},
            "training": {
                # Two spare steps: the run is stopped once the timed ones are done.
                "maxSteps": opts["warmup"] + opts["steps"] + 2,
                "perDeviceBatchSize": opts["generations"],
                "gradientAccumulationSteps": 1,
                "learningRate": 1e-6 if mode == "full" else 1e-5,
                "precision": "bf16" if on_gpu else "fp32",
                # VLM-R1's scripts: off for the full fine-tune, on with LoRA.
                "gradientCheckpointing": mode == "lora",
                "saveSteps": 10_000,
                "loggingSteps": 1,
            },
        }
    )


def probe_callback(task: dict[str, Any], extra: dict[str, Any]) -> Any:
    """Times steps, collects each step's token counts, and ends the process once the timed steps
    are done (so neither side spends the GPU on a final save nobody measures)."""
    import torch
    from transformers import TrainerCallback

    opts = task["opts"]
    needed = opts["warmup"] + opts["steps"] + 1
    cuda = torch.cuda.is_available()

    class Probe(TrainerCallback):
        def __init__(self) -> None:
            self.starts: list[float] = []
            self.logs: list[dict[str, Any]] = []
            self.args: dict[str, Any] = {}

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            self.args = {k: getattr(args, k, None) for k in COMPARED_ARGS}
            model = kwargs.get("model")
            if model is not None:
                extra["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            return control

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> Any:
            if logs and "num_tokens" in logs:
                self.logs.append(dict(logs))
            return control

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if cuda:
                torch.cuda.synchronize()
            self.starts.append(time.perf_counter())
            if len(self.starts) == needed:
                self.finish(args)
            return control

        def finish(self, args: Any) -> None:
            warm = opts["warmup"]
            times = [b - a for a, b in zip(self.starts[warm:], self.starts[warm + 1 :], strict=False)]
            sequences = args.per_device_train_batch_size * args.gradient_accumulation_steps
            steps, previous = [], 0.0
            for entry in self.logs:
                total = float(entry["num_tokens"]) - previous
                previous = float(entry["num_tokens"])
                completion = float(entry["completions/mean_length"]) * sequences
                steps.append({"prompt_tokens": total - completion, "completion_tokens": completion})
            peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else _max_rss_gib()
            extra["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30 if cuda else None
            _write(
                task,
                extra
                | {
                    "step_times": times,
                    "steps": steps[warm : warm + opts["steps"]],
                    "sequences_per_step": sequences,
                    "peak_memory_gib": peak,
                    "device": _device_name(),
                    "args": self.args,
                    "rewards": [entry.get("reward") for entry in self.logs],
                },
            )
            # The measurement is complete: end here rather than train the spare steps.
            sys.stdout.flush()
            os._exit(0)

    return Probe()


def child_train(task: dict[str, Any]) -> None:
    config = trainer_config(task)
    extra: dict[str, Any] = {}
    probe = probe_callback(task, extra)
    output = Path(task["workdir"]) / f"run-{task['trainer']}-{task['mode']}"
    shutil.rmtree(output, ignore_errors=True)
    if task["trainer"] == "vlmr1":
        train_vlmr1(config, output, probe)
    else:
        train_bare(config, output, probe)
    raise SystemExit("training ended before the timed steps were done")


def train_vlmr1(config: Any, output: Path, probe: Any) -> None:
    from vlmr1_trainer.progress import ProgressCallback
    from vlmr1_trainer.train import RunOptions, train
    from vlmr1_trainer.worker import progress_line, quiet_libraries

    quiet_libraries()
    progress = ProgressCallback(output)
    options = RunOptions(
        output_dir=output,
        accelerator="nvidia" if _device() == "cuda" else "cpu",
        resume=False,
        callbacks=[progress, progress_line(sys.stderr), probe],
        on_checkpoint=progress.report_checkpoint,
    )
    train(config, options)


def train_bare(config: Any, output: Path, probe: Any) -> None:
    import torch
    from datasets import Dataset  # type: ignore[import-untyped]
    from peft import LoraConfig
    from transformers import AutoProcessor
    from trl.trainer.grpo_config import GRPOConfig
    from trl.trainer.grpo_trainer import GRPOTrainer

    import vlmr1_core.processors  # noqa: F401 (the benchmark model's processor class)
    from vlmr1_trainer.data import load_samples, open_image, parse_sources
    from vlmr1_trainer.rewards import build
    from vlmr1_trainer.vlm.prompts import REC_TEMPLATE, build_prompt

    grpo, training = config.grpo, config.training
    on_gpu = _device() == "cuda"
    samples, _ = load_samples(parse_sources(config.datasets[0].jsonl, None), "error")
    rows = [
        {
            "prompt": build_prompt(REC_TEMPLATE, sample.problem, 1),
            "image": open_image(sample.image_paths[0]),
            "solution": sample.solution,
        }
        for sample in samples
    ]
    lora = config.finetuning.resolved_lora
    peft_config = None
    if lora is not None:
        # Adapters on the language model's projections only, as VLM-R1's LoRA script.
        names = "|".join(lora.target_modules)
        peft_config = LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=rf"(?:.*\.)?model\.language_model\.(?:.*\.)?(?:{names})",
            task_type="CAUSAL_LM",
        )
    args = GRPOConfig(
        output_dir=str(output),
        model_init_kwargs={"dtype": torch.bfloat16 if on_gpu else torch.float32},
        num_generations=grpo.num_generations,
        max_completion_length=grpo.max_completion_length,
        beta=grpo.beta,
        epsilon=grpo.epsilon,
        loss_type=grpo.loss_type,
        temperature=grpo.temperature,
        top_p=grpo.top_p,
        learning_rate=training.learning_rate,
        max_steps=training.max_steps,
        per_device_train_batch_size=training.per_device_batch_size,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        gradient_checkpointing=training.gradient_checkpointing,
        max_grad_norm=training.max_grad_norm,
        seed=training.seed,
        bf16=on_gpu,
        use_cpu=not on_gpu,
        save_strategy="no",
        logging_steps=1,
        report_to=[],
        disable_tqdm=True,
    )
    trainer = GRPOTrainer(
        model=config.model.uri,
        reward_funcs=[build("rec_iou"), build("rec_format")],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=AutoProcessor.from_pretrained(config.model.uri),  # type: ignore[no-untyped-call]
        peft_config=peft_config,
        callbacks=[probe],
    )
    trainer.train()


def child_eval(task: dict[str, Any]) -> None:
    """`vlmr1 eval`'s loader and loop on the benchmark model: greedy, batch 8, the training budget."""
    import torch

    from vlmr1_trainer.evaluation.policy import load_policy
    from vlmr1_trainer.evaluation.runner import EvalSet, evaluate

    workdir, opts = Path(task["workdir"]), task["opts"]
    batch, budget = 8, opts["completion_length"]
    policy = load_policy(str(workdir / "model"), family="qwen2.5-vl")
    generated = {"tokens": 0}
    generate = policy.model.generate

    def counting_generate(*args: Any, **kwargs: Any) -> Any:
        output = generate(*args, **kwargs)
        prompt = kwargs["input_ids"].shape[1]
        pad = kwargs.get("pad_token_id")
        new = output[:, prompt:]
        generated["tokens"] += int((new != pad).sum()) if pad is not None else new.numel()
        return output

    policy.model.generate = counting_generate
    jsonl = str(workdir / "data" / "train.jsonl")
    # A warm-up batch (kernel selection, allocator growth), then the timed samples.
    evaluate(policy, [EvalSet("warmup", "rec", jsonl, None, batch)], batch_size=batch, max_new_tokens=budget)
    generated["tokens"] = 0
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    evaluate(
        policy,
        [EvalSet("bench", "rec", jsonl, None, opts["eval_samples"])],
        batch_size=batch,
        max_new_tokens=budget,
        output=workdir / "eval",
    )
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else _max_rss_gib()
    _write(
        task,
        {
            "samples": opts["eval_samples"],
            "batch_size": batch,
            "max_new_tokens": budget,
            "seconds": seconds,
            "samples_per_s": opts["eval_samples"] / seconds,
            "tokens_per_s": generated["tokens"] / seconds,
            "peak_memory_gib": peak,
            "device": _device_name(),
        },
    )


def child_smoke(task: dict[str, Any]) -> None:
    """`vlmr1 run` as a user runs it, on this device: the local example in the training precision with
    freezeVision and gradient checkpointing, two steps then a resumed third (checkpoints, manifests,
    evaluation of each checkpoint on the device); then LoRA. Each command must succeed."""
    import yaml

    workdir = Path(task["workdir"])
    example = REPO / "examples" / "grpojob-rec-local.yaml"
    job = yaml.safe_load(example.read_text())
    spec = job["spec"]
    for dataset in [*spec["datasets"], *spec["evaluation"]["datasets"]]:
        dataset["jsonl"] = str(example.parent / dataset["jsonl"])
        dataset["imageRoot"] = str(example.parent / dataset["imageRoot"])
    spec["training"] |= {"precision": "bf16", "gradientCheckpointing": True}
    cli = [sys.executable, "-m", "vlmr1_cli"]
    commands = []
    for mode in ("freezeVision", "lora"):
        spec["finetuning"] = {"mode": mode}
        manifest = workdir / f"smoke-{mode}.yaml"
        manifest.write_text(yaml.safe_dump(job, sort_keys=False))
        out = workdir / f"smoke-{mode}"
        commands.append([*cli, "run", str(manifest), "--output", str(out), "--max-steps", "2", "--no-resume"])
        if mode == "freezeVision":
            commands.append([*cli, "run", str(manifest), "--output", str(out), "--max-steps", "3"])
        commands.append([*cli, "checkpoints", "verify", str(out / "checkpoints" / "checkpoint-2")])
    done = []
    for command in commands:
        print("$", " ".join(command[1:]), flush=True)
        proc = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
        print(proc.stdout, flush=True)
        if proc.returncode != 0:
            raise SystemExit(f"smoke command failed with exit code {proc.returncode}: {' '.join(command[1:])}")
        if "--max-steps 3" in " ".join(command) and "resumed from step 2" not in proc.stdout:
            raise SystemExit("the second run did not resume from the checkpoint of step 2")
        done.append(" ".join(command[3:]))
    _write(task, {"commands": done, "device": _device_name()})


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
        sys.exit(0)
    sys.exit(main())
