"""`vlmr1 plot` (parser: vlmr1_cli.plot): reward_curve.png redrawn from a run's metrics.jsonl."""

from __future__ import annotations

import argparse

from vlmr1_core.errors import UserError


def run(args: argparse.Namespace) -> int:
    from vlmr1_trainer.progress.callback import METRICS_FILE
    from vlmr1_trainer.progress.curve import CURVE_FILE, plot, read_run

    metrics = args.run_dir / METRICS_FILE
    if not metrics.is_file():
        raise UserError(
            f"{metrics} does not exist",
            fix="pass the folder of a run (`vlmr1 run --output DIR`, or a pod's output folder)",
        )
    curves = read_run(args.run_dir)
    if not curves.steps and not curves.evaluations:
        raise UserError(f"{metrics} holds no progress or evaluation lines yet", fix="wait for the first logged step")
    output = args.output or args.run_dir / CURVE_FILE
    try:
        plot(curves, output, title=args.run_dir.resolve().name)
    except OSError as exc:
        raise UserError(f"cannot write {output}: {exc.strerror or exc}", fix="choose a writable --output") from exc
    names = ", ".join([*curves.rewards, *(["KL"] if any(v is not None for v in curves.kl) else [])])
    print(f"wrote {output}: {len(curves.steps)} steps ({names}), {len(curves.evaluations)} evaluation metric(s)")
    return 0
