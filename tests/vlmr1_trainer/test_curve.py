"""Reward curves: metrics.jsonl -> series, gains, reward_curve.png and `vlmr1 plot`."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from vlmr1_trainer.progress.curve import CURVE_FILE, Curves, plot, quarter_gain, read_curves, read_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _progress(step: int, mcq: float, fmt: float, kl: float | None = None) -> str:
    rewards = {"mcq": {"mean": mcq, "std": 0.1}, "format": {"mean": fmt, "std": 0.0}}
    return json.dumps({"event": "progress", "step": step, "reward_mean": mcq + fmt, "rewards": rewards, "kl": kl})


def _metrics_lines() -> list[str]:
    return [
        json.dumps({"event": "evaluation", "step": 0, "metrics": {"eval/val/mcq_acc": 0.25, "eval/val/samples": 8}}),
        *(_progress(step, 0.1 * step, 1.0, kl=0.01 * step) for step in range(1, 9)),
        json.dumps({"event": "checkpoint", "step": 4, "metrics": {"eval/val/mcq_acc": 0.5, "reward": 1.4}}),
        # A resumed run logs step 8 again: the later line wins.
        _progress(8, 0.9, 1.0, kl=0.08),
        json.dumps({"event": "checkpoint", "step": 8, "metrics": {"eval/val/mcq_acc": 0.875, "eval/val/unparsed": 0}}),
        '{"event": "progress", "step": 9, "rew',  # a torn last line while the run writes
    ]


def test_read_curves_series_and_evaluations() -> None:
    curves = read_curves(_metrics_lines())
    assert curves.steps == list(range(1, 9))
    assert curves.rewards["mcq"] == pytest.approx([0.1 * s for s in range(1, 8)] + [0.9])
    assert curves.rewards["format"] == [1.0] * 8
    assert curves.kl[-1] == pytest.approx(0.08)
    # Counts (samples, unparsed) and training metrics are not evaluation series.
    assert curves.evaluations == {"eval/val/mcq_acc": [(0, 0.25), (4, 0.5), (8, 0.875)]}


def test_gains_compare_first_and_last_quarter() -> None:
    curves = read_curves(_metrics_lines())
    first, last, gain = curves.gains()["mcq"]
    assert first == pytest.approx(0.15) and last == pytest.approx(0.8) and gain == pytest.approx(0.65)
    assert curves.gains()["format"][2] == 0.0
    assert quarter_gain([1.0, 2.0, 3.0]) is None


def test_plot_writes_png_with_each_series(tmp_path: Path) -> None:
    curves = read_curves(_metrics_lines())
    out = tmp_path / "curve.png"
    drawn = plot(curves, out, title="test")
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    assert drawn["mcq (mean)"] == (
        [float(s) for s in range(1, 9)],
        pytest.approx([0.1 * s for s in range(1, 8)] + [0.9]),
    )
    assert drawn["format (mean)"][1] == [1.0] * 8
    assert drawn["KL"][1][-1] == pytest.approx(0.08)
    assert drawn["eval/val/mcq_acc"] == ([0.0, 4.0, 8.0], [0.25, 0.5, 0.875])


def test_plot_leaves_gaps_for_missing_values_and_no_kl_without_one(tmp_path: Path) -> None:
    curves = Curves(steps=[1, 2, 3], reward=[None, 1.0, 1.0], rewards={"mcq": [0.5, None, 1.0]}, kl=[None] * 3)
    drawn = plot(curves, tmp_path / "c.png")
    xs, ys = drawn["mcq (mean)"]
    assert xs == [1.0, 2.0, 3.0] and ys[0] == 0.5 and math.isnan(ys[1]) and ys[2] == 1.0
    assert "KL" not in drawn


def _vlmr1(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vlmr1_cli", *args], capture_output=True, text=True, timeout=120)


def test_vlmr1_plot_redraws_from_metrics_jsonl(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text("\n".join(_metrics_lines()) + "\n")
    result = _vlmr1("plot", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / CURVE_FILE).read_bytes().startswith(PNG_SIGNATURE)
    assert "8 steps (format, mcq, KL), 1 evaluation metric(s)" in result.stdout
    other = tmp_path / "elsewhere" / "x.png"
    assert _vlmr1("plot", str(tmp_path), "--output", str(other)).returncode == 0
    assert other.read_bytes().startswith(PNG_SIGNATURE)
    assert read_run(tmp_path).steps == list(range(1, 9))


def test_vlmr1_plot_without_a_run_is_a_user_error(tmp_path: Path) -> None:
    result = _vlmr1("plot", str(tmp_path))
    assert result.returncode == 2
    assert "metrics.jsonl does not exist" in result.stderr and "Traceback" not in result.stderr


def test_summary_lines_show_gains_and_a_readable_evaluation_trail() -> None:
    from vlmr1_trainer.worker import learning_lines

    lines = learning_lines(read_curves(_metrics_lines()))
    assert lines[0] == "format:      1.000 -> 1.000 (+0.000, first vs last quarter of steps)"
    assert lines[1] == "mcq:         0.150 -> 0.800 (+0.650, first vs last quarter of steps)"
    assert lines[2] == "eval/val/mcq_acc: step 0: 0.250  step 4: 0.500  step 8: 0.875 (+0.625)"
    many = Curves(evaluations={"eval/v/rec_acc": [(s, s / 100) for s in range(0, 24, 2)]})
    (line,) = learning_lines(many)
    expected = (
        "eval/v/rec_acc: step 0: 0.000  step 2: 0.020  step 4: 0.040  ...  "
        "step 18: 0.180  step 20: 0.200  step 22: 0.220 (+0.220)"
    )
    assert line == expected
    # SFT: no rewards, the loss is the curve.
    sft = Curves(steps=[1, 2, 3, 4], loss=[4.0, 3.0, 2.0, 1.0])
    assert learning_lines(sft) == ["loss:        4.000 -> 1.000 (-3.000, first vs last quarter of steps)"]
