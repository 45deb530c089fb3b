"""Rewards users bring, in real GRPO steps: a reference shipped as reward code reading a data
line's own field, a CPU-heavy reference in the worker pool that hangs on every completion
(bounded, counted in metrics.jsonl), and a remote reward served over HTTP."""

from __future__ import annotations

import json
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from vlmr1_core.config import TrainerConfig
from vlmr1_trainer.progress import ProgressCallback
from vlmr1_trainer.train import RunOptions, train

REPO = Path(__file__).resolve().parents[2]
SHAPES = REPO / "examples" / "data" / "rec-shapes"

REWARD_CODE = """
    import time

    def by_field(completions, expected, **kwargs):
        # The data line's own field arrives as a column.
        assert all(e == "box" for e in expected), expected
        return [float(len(c) > 3) for c in completions]

    def hangs(completions, hang, **kwargs):
        if hang[0]:
            time.sleep(60)  # never finishes within the budget: killed, scored 0.0, counted
        return [1.0 for _ in completions]

    hangs.cpu_bound = True
    """


@pytest.fixture
def judge() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            data = json.dumps({"scores": [0.5 for _ in body["completions"]]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/score", seen
    server.shutdown()
    server.server_close()


def test_custom_pooled_and_remote_rewards_train_and_report(
    tmp_path: Path, judge: tuple[str, list[dict[str, Any]]]
) -> None:
    url, seen = judge
    code = tmp_path / "reward-code"
    code.mkdir()
    (code / "job_rewards.py").write_text(textwrap.dedent(REWARD_CODE))
    lines = (SHAPES / "train.jsonl").read_text().splitlines()[:2]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({**json.loads(line), "expected": "box", "hang": True}) + "\n" for line in lines))
    config = TrainerConfig.model_validate(
        {
            "model": {"uri": "builtin://tiny-qwen2.5-vl"},
            "task": "rec",
            "datasets": [{"jsonl": str(data), "imageRoot": str(SHAPES / "images")}],
            "rewardCode": {"uri": str(code)},
            "rewards": [
                {"name": "job_rewards:by_field"},
                {"name": "job_rewards:hangs", "timeoutSeconds": 0.3},
                {"name": "judge", "remote": {"url": url}},
            ],
            "scoring": {"workers": 1},
            "grpo": {"numGenerations": 2, "maxCompletionLength": 8},
            "training": {"maxSteps": 2, "perDeviceBatchSize": 2, "saveSteps": 2, "precision": "fp32"},
        }
    )
    # The probe batch before training hangs too: bounded there as well (a warning, not an error).
    run = tmp_path / "run"
    progress = ProgressCallback(run, metrics_port=None)
    result = train(config, RunOptions(output_dir=run, callbacks=[progress]))
    assert result.steps == 2
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r.get("event", "progress") == "progress" and r.get("rewards")]
    assert steps, records
    per_call = len(seen[-1]["completions"])  # completions TRL scores per reward call
    assert per_call >= 2
    for record in steps:
        hangs = record["rewards"]["job_rewards:hangs"]
        assert hangs["mean"] == 0.0 and hangs["timeouts"] == per_call  # every completion, bounded
        assert record["rewards"]["judge"] == {
            "mean": 0.5, "std": 0.0, "timeouts": None, "errors": None, "failures": 0.0
        }  # fmt: skip
        assert record["rewards"]["job_rewards:by_field"]["errors"] == 0.0
    assert all(body["reward"] == "judge" for body in seen)
    assert "expected" in seen[-1]["columns"] and "images" not in seen[-1]["columns"]
