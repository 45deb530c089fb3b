"""One training process: read the config, train, report; the same code in a pod and locally.

`python -m vlmr1_trainer --config FILE` (the container entry point) lands in `main`: a
node process with several training processes hands over to torchrun, which starts
this again once per worker; a worker trains and, on rank 0, reports progress and
prints the closing summary. A user error (a bad config, a missing data file, a bad sample,
a model that cannot be loaded) is one line in the pod's log, as `vlmr1 run` prints it, and
exit status 2; ``VLMR1_DEBUG=1`` adds the traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml
from pydantic import ValidationError

from vlmr1_core.accelerators import ACCELERATORS
from vlmr1_core.checkpoints import CHECKPOINTS
from vlmr1_core.config import TrainerConfig
from vlmr1_core.errors import UserError, report
from vlmr1_trainer.launch import NodeEnv, is_worker, torchrun_argv

if TYPE_CHECKING:
    from transformers import TrainerCallback

    from vlmr1_core.accelerators import Accelerator
    from vlmr1_core.checkpoints import CheckpointInfo
    from vlmr1_trainer.mirror import CheckpointMirror
    from vlmr1_trainer.progress.curve import Curves
    from vlmr1_trainer.train import TrainResult

log = logging.getLogger("vlmr1_trainer")

#: Where a pod writes when the spec names no checkpoint storage (an emptyDir).
DEFAULT_POD_OUTPUT = "/var/lib/vlmr1/output"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vlmr1_trainer", description="Run GRPO training from a TrainerConfig.")
    p.add_argument("--config", type=Path, required=True, help="TrainerConfig YAML (the operator mounts it)")
    p.add_argument("--output", type=Path, help="run folder (default: checkpoint.uri's path, else %(default)s)")
    p.add_argument(
        "--accelerator",
        choices=ACCELERATORS,
        default=os.environ.get("VLMR1_ACCELERATOR", "cpu"),
        help="device kind (default: $VLMR1_ACCELERATOR, else cpu)",
    )
    p.add_argument("--max-steps", type=int, help="stop after this many steps (overrides training.maxSteps)")
    p.add_argument("--no-resume", action="store_true", help="start fresh even if checkpoints exist")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ["VLMR1_METRICS_PORT"]) if os.environ.get("VLMR1_METRICS_PORT") else None,
        help="serve Prometheus metrics on this port from rank 0 (default: $VLMR1_METRICS_PORT, else off)",
    )
    p.add_argument(
        "--dump-completions", action="store_true", help="dump sampled completions with rewards (or DEBUG_MODE=true)"
    )
    return p


def load_config(path: Path) -> TrainerConfig:
    """The TrainerConfig in a YAML file; a bad one is a UserError naming the file and field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return TrainerConfig.model_validate(data)
    except OSError as exc:
        raise UserError(f"cannot read the trainer config: {exc.strerror or exc}", file=path) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise UserError(f"invalid YAML: {getattr(exc, 'problem', None) or exc}", file=path, line=line) from exc
    except ValidationError as exc:
        from vlmr1_core.api.manifest import ManifestError, Problem, load_documents

        docs = load_documents(path)
        problems = [
            Problem(str(path), docs[0].line_of(e["loc"]) if docs else None, ".".join(map(str, e["loc"])), e["msg"])
            for e in exc.errors()
        ]
        raise ManifestError(problems) from exc


def output_dir(config: TrainerConfig, explicit: Path | None) -> Path:
    """The run folder: ``--output``; else checkpoint.uri's folder (a path or pvc://); else, with no
    uri or an s3:// one (then the local staging the checkpoints are uploaded from),
    ``$VLMR1_OUTPUT_DIR`` or :data:`DEFAULT_POD_OUTPUT` (the pod's scratch volume)."""
    if explicit is not None:
        return explicit
    if config.checkpoint.uri and not config.checkpoint.uri.startswith("s3://"):
        from vlmr1_core.uri import resolve_local_path

        return resolve_local_path(config.checkpoint.uri)
    return Path(os.environ.get("VLMR1_OUTPUT_DIR", DEFAULT_POD_OUTPUT))


def main(argv: Sequence[str] | None = None) -> int:
    """The entry point: train, or print a user error as one line and return 2."""
    try:
        return _main(argv)
    except UserError as exc:
        debug = os.environ.get("VLMR1_DEBUG", "") not in ("", "0")
        return report(exc, f"vlmr1_trainer (rank {os.environ.get('RANK', '0')})", sys.stderr, debug=debug)


def _main(argv: Sequence[str] | None) -> int:
    args = parser().parse_args(argv)
    node = NodeEnv.from_environ(os.environ)
    if not is_worker(os.environ):
        if node.nproc_per_node > 1:
            # torchrun supervises this node's workers; its exit code is the pod's.
            return subprocess.call(torchrun_argv(node, sys.argv[1:] if argv is None else list(argv)))
        if node.world_size > 1:
            os.environ.update(node.single_process_environ())
    config = load_config(args.config)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    logging.basicConfig(level=logging.INFO if rank0 else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result = run_training(
        config,
        output=output_dir(config, args.output),
        accelerator=args.accelerator,
        world_size=node.world_size,
        max_steps=args.max_steps,
        resume=not args.no_resume,
        rank=int(os.environ.get("RANK", "0")),
        metrics_port=args.metrics_port,
        debug=args.dump_completions,
    )
    # One line per rank in every pod's log: which ranks took part, and how far they got.
    print(
        f"vlmr1: rank {os.environ.get('RANK', '0')}/{node.world_size} finished at step {result.steps}", file=sys.stderr
    )
    if rank0:
        print_summary(result, sys.stdout)
    return leave_distributed(0)


def leave_distributed(code: int) -> int:
    """End a multi-rank run: wait until every rank has done its closing work (rank 0 draws the
    curve and prints the summary), then exit at once with ``code``.

    Not ``destroy_process_group`` and a normal interpreter exit: gloo's destructor joins its
    worker thread while holding the GIL, and that thread may need the GIL to release the last
    collective's tensors: the process hangs (seen in CI, one run in several). Exiting without
    the interpreter's teardown skips that destructor; everything the run writes is closed by now.
    Single-process runs return ``code``.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return code
    dist.barrier()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_training(
    config: TrainerConfig,
    *,
    output: Path,
    accelerator: Accelerator,
    world_size: int,
    max_steps: int | None = None,
    resume: bool = True,
    rank: int = 0,
    metrics_port: int | None = None,
    debug: bool = False,
    stream: TextIO | None = None,
    job_name: str | None = None,
    namespace: str | None = None,
) -> TrainResult:
    """Train with progress reporting on rank 0: metrics.jsonl (progress and checkpoint
    events, what the operator reads), Prometheus gauges on `metrics_port`, a progress line."""
    from vlmr1_trainer.mirror import CheckpointMirror
    from vlmr1_trainer.preflight import check_checkpoint_store
    from vlmr1_trainer.progress import ProgressCallback, debug_enabled
    from vlmr1_trainer.train import RunOptions, train

    quiet_libraries()
    # An s3:// checkpoint.uri: credentials and access checked before anything loads, and the
    # newest complete checkpoint in the bucket brought into the run folder to resume from.
    check_checkpoint_store(config, write=rank == 0)
    mirror = CheckpointMirror.for_config(config, output)
    if mirror is not None:
        mirror.restore(resume=resume, rank=rank)
    progress = ProgressCallback(output, metrics_port=metrics_port)
    callbacks: list[TrainerCallback] = [progress]
    if rank == 0:
        callbacks.append(progress_line(stream or sys.stderr))
    on_checkpoint: Callable[[CheckpointInfo], None] = progress.report_checkpoint
    if mirror is not None:
        on_checkpoint = _uploaded_first(mirror, progress.report_checkpoint)
    options = RunOptions(
        output_dir=output,
        accelerator=accelerator,
        world_size=world_size,
        max_steps=max_steps,
        resume=resume,
        checkpoint_uri=checkpoint_base_uri(config),
        callbacks=callbacks,
        on_checkpoint=on_checkpoint,
        on_start_evaluation=progress.report_start_evaluation,
        debug=debug_enabled(flag=debug),
        rank=rank,
        job_name=job_name,
        namespace=namespace,
    )
    try:
        result = train(config, options)
    finally:
        progress.close()
    if rank == 0:
        draw_curve(result, output)
    return result


def _uploaded_first(
    mirror: CheckpointMirror, report: Callable[[CheckpointInfo], None]
) -> Callable[[CheckpointInfo], None]:
    """``report`` a checkpoint only once it is complete in the bucket: status never names one that is not."""

    def publish_then_report(info: CheckpointInfo) -> None:
        mirror.publish(info)
        report(info)

    return publish_then_report


def draw_curve(result: TrainResult, output: Path) -> None:
    """Read the run's metrics.jsonl into ``result.curves`` and draw reward_curve.png. A picture
    that cannot be drawn (a full disk, a broken font cache) is a warning: training succeeded."""
    from vlmr1_trainer.progress.curve import CURVE_FILE, plot, read_run

    try:
        result.curves = read_run(output)
        plot(result.curves, output / CURVE_FILE, title=output.name)
        result.curve_file = output / CURVE_FILE
    except (OSError, ValueError, RuntimeError) as exc:
        log.warning("reward curve not drawn: %s", exc)


def quiet_libraries() -> None:
    """Our progress line and summary replace transformers' per-load and per-save progress bars;
    its deprecation notices about its own internals are not actionable for a user."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")


def checkpoint_base_uri(config: TrainerConfig) -> str | None:
    """The uri of the folder holding the checkpoints (``<checkpoint.uri>/checkpoints``: the run
    folder is checkpoint.uri itself), recorded with each checkpoint; None for a plain path."""
    uri = config.checkpoint.uri
    return f"{uri.rstrip('/')}/{CHECKPOINTS}" if uri and "://" in uri else None


def progress_line(stream: TextIO) -> TrainerCallback:
    """One line per logged step: step/total, reward mean ± std, seconds per step, ETA."""
    from transformers import TrainerCallback

    class ProgressLine(TrainerCallback):
        def __init__(self) -> None:
            self.started: float | None = None
            self.first_step = 0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            self.started, self.first_step = time.monotonic(), int(state.global_step)
            return control

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> Any:
            # GRPO logs a reward per step, SFT a loss; the end-of-training summary logs neither.
            if not logs or not ("reward" in logs or "loss" in logs) or self.started is None:
                return control
            step, total = int(state.global_step), int(state.max_steps or 0)
            done = max(step - self.first_step, 1)
            per_step = (time.monotonic() - self.started) / done
            eta = per_step * max(total - step, 0)
            std = logs.get("reward_std")
            if "reward" not in logs:
                reward = f"loss {logs['loss']:.4f}"
            else:
                reward = f"reward {logs['reward']:.3f}" + (f" ± {std:.3f}" if isinstance(std, int | float) else "")
            parts = [
                f"{key[len('rewards/') : -len('/mean')]} {value:.2f}"
                for key, value in sorted(logs.items())
                if key.startswith("rewards/") and key.endswith("/mean") and isinstance(value, int | float)
            ]
            if len(parts) > 1:  # with one reward the total says it all
                reward += f" ({', '.join(parts)})"
            width = 20
            filled = width * step // total if total else 0
            bar = "#" * filled + "." * (width - filled)
            stream.write(f"[{bar}] step {step}/{total}  {reward}  {per_step:.1f} s/step  ETA {eta:.0f} s\n")
            stream.flush()
            return control

    return ProgressLine()


def print_summary(result: TrainResult, stream: TextIO) -> None:
    """The closing summary of a run: steps, reward curve, checkpoints, skipped samples."""
    key = "reward" if any("reward" in e for e in result.log_history) else "loss"
    values = [
        float(e[key]) for e in result.log_history if isinstance(e.get(key), int | float) and "train_runtime" not in e
    ]
    curve = f"{values[0]:.3f} -> {values[-1]:.3f}" if values else "n/a (no step logged)"
    stream.write("\nvlmr1 run summary\n")
    stream.write(f"  steps:       {result.steps}")
    if result.resumed_from is not None:
        stream.write(f" (resumed from step {result.resumed_from.step})")
    stream.write(f"\n  {key + ':':<12} {curve} over {len(values)} logged steps\n")
    if result.curves is not None:
        for line in learning_lines(result.curves):
            stream.write(f"  {line}\n")
    stream.write(f"  data:        {result.data_report.summary()}\n")
    if not result.checkpoints:
        stream.write("  checkpoints: none saved\n")
    for info in result.checkpoints:
        stream.write(f"  checkpoint:  step {info.step}  {info.digest}  {info.path}\n")
        evaluated = {k: v for k, v in info.metrics.items() if k.startswith("eval/") and isinstance(v, int | float)}
        if evaluated:
            stream.write("               " + "  ".join(f"{k}={v:.4f}" for k, v in sorted(evaluated.items())) + "\n")
    if result.curve_file is not None:
        stream.write(f"  curve:       {result.curve_file}\n")
    stream.flush()


def learning_lines(curves: Curves) -> list[str]:
    """What the run learned: each reward's first- vs last-quarter mean, and each evaluation
    metric from its first point (the starting model with evaluation.onStart) to its last."""
    lines = []
    gains = curves.gains() or curves.loss_gain()
    for name, (first, last, gain) in gains.items():
        lines.append(f"{name + ':':<12} {first:.3f} -> {last:.3f} ({gain:+.3f}, first vs last quarter of steps)")
    for name, points in curves.evaluations.items():
        if len(points) > 1:
            # Many checkpoints: the first and last three, so the line stays readable.
            shown = points if len(points) <= 10 else [*points[:3], None, *points[-3:]]
            trail = "  ".join("..." if p is None else f"step {p[0]}: {p[1]:.3f}" for p in shown)
            lines.append(f"{name}: {trail} ({points[-1][1] - points[0][1]:+.3f})")
    return lines
