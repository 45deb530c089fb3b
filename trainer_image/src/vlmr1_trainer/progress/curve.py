"""A run's learning curve from its ``metrics.jsonl``: per-reward series, gains and ``reward_curve.png``.

``metrics.jsonl`` is the record every run writes (progress, checkpoint and start-evaluation
lines), so the picture, the summary's gains and ``vlmr1 plot`` are all computed from it and
can be redrawn at any time, for a local run or a pod's output folder.

>>> quarter_gain([0.0, 0.0, 0.5, 0.5, 0.5, 1.0, 1.0, 1.0])
(0.0, 1.0, 1.0)
>>> quarter_gain([0.3]) is None
True
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CURVE_FILE = "reward_curve.png"
"""The picture every run writes into its folder."""


@dataclass
class Curves:
    """Series read from one run's metrics.jsonl (the last line of a step wins on a resumed run)."""

    steps: list[int] = field(default_factory=list)
    reward: list[float | None] = field(default_factory=list)
    """The weighted total reward's mean, per logged step."""
    rewards: dict[str, list[float | None]] = field(default_factory=dict)
    """Each reward's mean per logged step, aligned with ``steps``."""
    kl: list[float | None] = field(default_factory=list)
    loss: list[float | None] = field(default_factory=list)
    """The training loss per logged step (what SFT reports; GRPO's is near zero by construction)."""
    evaluations: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    """Each evaluation metric (``eval/<set>/<metric>``, headline metrics only) as (step, value):
    the starting model at step 0 (evaluation.onStart), then every checkpoint."""

    def gains(self) -> dict[str, tuple[float, float, float]]:
        """Per reward: (first-quarter mean, last-quarter mean, gain), for series of 4+ points."""
        out = {}
        for name, series in self.rewards.items():
            gain = quarter_gain([v for v in series if v is not None])
            if gain is not None:
                out[name] = gain
        return out

    def loss_gain(self) -> dict[str, tuple[float, float, float]]:
        """``{"loss": (first-quarter mean, last-quarter mean, change)}``, or empty under 4 points."""
        gain = quarter_gain([v for v in self.loss if v is not None])
        return {"loss": gain} if gain is not None else {}


def quarter_gain(values: Sequence[float]) -> tuple[float, float, float] | None:
    """(mean of the first quarter, mean of the last quarter, their difference); None under 4 values."""
    quarter = len(values) // 4
    if quarter == 0:
        return None
    first = math.fsum(values[:quarter]) / quarter
    last = math.fsum(values[-quarter:]) / quarter
    return first, last, last - first


def _headline(metrics: Mapping[str, Any]) -> dict[str, float]:
    # eval/<set>/samples and /unparsed are counts, not something to plot.
    return {
        k: float(v)
        for k, v in metrics.items()
        if k.startswith("eval/")
        and not k.endswith(("/samples", "/unparsed"))
        and isinstance(v, int | float)
        and not isinstance(v, bool)
    }


def read_curves(lines: Iterable[str]) -> Curves:
    """Curves from the lines of a metrics.jsonl (unparseable lines, say a torn last line, are skipped)."""
    progress: dict[int, Mapping[str, Any]] = {}
    evaluations: dict[str, dict[int, float]] = {}
    for text in lines:
        try:
            event = json.loads(text)
        except ValueError:
            continue
        if not isinstance(event, dict) or not isinstance(event.get("step"), int):
            continue
        step = event["step"]
        kind = event.get("event")
        if kind == "progress":
            progress[step] = event
        elif kind in ("checkpoint", "evaluation"):
            for name, value in _headline(event.get("metrics") or {}).items():
                evaluations.setdefault(name, {})[step] = value
    curves = Curves()
    names = sorted({name for e in progress.values() for name in (e.get("rewards") or {})})
    curves.rewards = {name: [] for name in names}
    for step in sorted(progress):
        event = progress[step]
        curves.steps.append(step)
        curves.reward.append(event.get("reward_mean"))
        curves.kl.append(event.get("kl"))
        curves.loss.append(event.get("loss"))
        for name in names:
            curves.rewards[name].append(((event.get("rewards") or {}).get(name) or {}).get("mean"))
    curves.evaluations = {name: sorted(points.items()) for name, points in sorted(evaluations.items())}
    return curves


def read_run(run_dir: Path) -> Curves:
    """Curves of the run in ``run_dir`` (its metrics.jsonl)."""
    from vlmr1_trainer.progress.callback import METRICS_FILE

    path = run_dir / METRICS_FILE
    with path.open(encoding="utf-8") as stream:
        return read_curves(stream)


Series = dict[str, tuple[list[float], list[float]]]


def plot(curves: Curves, output: Path, *, title: str = "") -> Series:
    """Draw ``curves`` into the PNG ``output``: rewards (and KL) per step above, or the loss for a
    run without rewards (SFT), evaluation metrics below. Returns what was drawn: each line's
    label and its (x, y) points."""
    import matplotlib

    matplotlib.use("Agg")  # headless: pods and CI have no display
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True, constrained_layout=True)
    try:
        for name, series in curves.rewards.items():
            top.plot(curves.steps, _nan(series), label=f"{name} (mean)", linewidth=1.2)
        if any(v is not None for v in curves.kl):
            kl_axis = top.twinx()
            kl_axis.plot(curves.steps, _nan(curves.kl), color="grey", linestyle=":", label="KL")
            kl_axis.set_ylabel("KL")
            kl_axis.legend(loc="lower right", fontsize="small")
        if not curves.rewards:  # SFT: no rewards, the loss is the curve
            top.plot(curves.steps, _nan(curves.loss), label="loss", linewidth=1.2)
        top.set_ylabel("reward" if curves.rewards else "loss")
        top.set_title(f"{title}: {'rewards' if curves.rewards else 'loss'} per step" if title else "per step")
        top.legend(loc="upper left", fontsize="small")
        for name, points in curves.evaluations.items():
            bottom.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
        bottom.set_xlabel("step")
        bottom.set_ylabel("evaluation")
        bottom.set_title("held-out evaluation (step 0: the starting model)")
        if curves.evaluations:
            bottom.legend(loc="upper left", fontsize="small")
        else:
            bottom.text(0.5, 0.5, "no evaluation section", ha="center", va="center", transform=bottom.transAxes)
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(f".{output.name}.tmp")
        fig.savefig(tmp, format="png", dpi=100)
        tmp.replace(output)
        drawn: Series = {}
        for axis in fig.axes:
            for line in axis.get_lines():
                xs: Any = line.get_xdata()
                ys: Any = line.get_ydata()
                drawn[str(line.get_label())] = ([float(x) for x in xs], [float(y) for y in ys])
        return drawn
    finally:
        plt.close(fig)


def _nan(series: Sequence[float | None]) -> list[float]:
    # A gap in the line where a step logged no value, rather than a fake zero.
    return [math.nan if v is None else float(v) for v in series]
