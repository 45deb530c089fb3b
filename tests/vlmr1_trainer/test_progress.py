"""Progress reporting: TRL logs -> records, JSON lines, Prometheus, checkpoints, DEBUG dumps."""

from __future__ import annotations

import doctest
import importlib
import io
import json
import math
import pickle
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from transformers import TrainerControl, TrainerState, TrainingArguments

from vlmr1_core.checkpoints import CheckpointInfo
from vlmr1_trainer import rewards
from vlmr1_trainer.progress import (
    COMPLETIONS_FILE,
    METRICS_FILE,
    CompletionDumper,
    JsonlWriter,
    ProgressCallback,
    ProgressMetrics,
    ProgressRecord,
    RewardStats,
    debug_enabled,
    json_line,
    record_from_logs,
    start_metrics_server,
    stop_metrics_server,
    wrap_rewards,
)

# What TRL 1.16's GRPOTrainer.log hands the callbacks for one training step (grpo loss,
# beta > 0, two reward functions), including a reward whose every value was None.
TRL_LOGS: dict[str, Any] = {
    "loss": 0.0123,
    "grad_norm": 1.5,
    "learning_rate": 9.5e-07,
    "num_tokens": 4096.0,
    "completions/mean_length": 37.25,
    "completions/min_length": 12.0,
    "completions/max_length": 64.0,
    "completions/clipped_ratio": 0.125,
    "completions/mean_terminated_length": 30.0,
    "completions/min_terminated_length": 12.0,
    "completions/max_terminated_length": 60.0,
    "rewards/rec_iou/mean": 0.42,
    "rewards/rec_iou/std": 0.31,
    "rewards/rec_iou/timeouts": 0.5,  # scoring.py logs these through TRL's log_metric
    "rewards/rec_iou/errors": 0.0,
    "rewards/format/mean": 0.875,
    "rewards/format/std": 0.33,
    "rewards/org/judge-model/mean": None,
    "rewards/org/judge-model/std": float("nan"),
    "reward": 1.295,
    "reward_std": 0.5,
    "frac_reward_zero_std": 0.0,
    "kl": 0.0031,
    "entropy": 2.1,
    "clip_ratio/low_mean": 0.0,
    "clip_ratio/low_min": 0.0,
    "clip_ratio/high_mean": 0.01,
    "clip_ratio/high_max": 0.02,
    "clip_ratio/region_mean": 0.01,
    "epoch": 0.25,
}


class FakeClock:
    """A clock that moves only when told (no sleeps in tests)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    "name",
    [
        "vlmr1_trainer.progress.jsonl",
        "vlmr1_trainer.progress.record",
        "vlmr1_trainer.progress.debug",
    ],
)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0 and result.attempted > 0


# -- record mapping ------------------------------------------------------------------------------


def test_record_from_real_trl_keys() -> None:
    record = record_from_logs(
        TRL_LOGS,
        step=20,
        max_steps=100,
        timestamp=1.7e9,
        samples_per_second=21.5,
        step_time_seconds=3.0,
        eta_seconds=240.0,
    )
    assert record == ProgressRecord(
        step=20,
        max_steps=100,
        timestamp=1.7e9,
        epoch=0.25,
        reward_mean=1.295,
        reward_std=0.5,
        rewards={
            "format": RewardStats(0.875, 0.33),
            "org/judge-model": RewardStats(None, None),
            "rec_iou": RewardStats(0.42, 0.31, timeouts=0.5, errors=0.0),
        },
        kl=0.0031,
        completion_length=37.25,
        clip_ratio=0.01,
        learning_rate=9.5e-07,
        loss=0.0123,
        grad_norm=1.5,
        entropy=2.1,
        samples_per_second=21.5,
        step_time_seconds=3.0,
        eta_seconds=240.0,
    )
    assert record.to_dict()["rewards"]["rec_iou"] == {
        "mean": 0.42, "std": 0.31, "timeouts": 0.5, "errors": 0.0, "failures": None
    }  # fmt: skip


def test_missing_and_non_finite_keys_are_none() -> None:
    # beta = 0 (TRL's default): no kl; cispo: its own clip ratio; a NaN reward window.
    logs = {"loss": 0.1, "reward": float("nan"), "reward_std": float("inf"), "cispo_clip_ratio": 0.2}
    record = record_from_logs(logs, step=3, max_steps=-1, timestamp=5.0, epoch=0.5)
    assert (record.reward_mean, record.reward_std, record.kl, record.completion_length) == (None, None, None, None)
    assert (record.learning_rate, record.samples_per_second, record.eta_seconds) == (None, None, None)
    assert record.rewards == {}
    assert record.clip_ratio == 0.2
    assert record.max_steps is None  # -1: the Trainer's "not set"
    assert record.epoch == 0.5  # from the state when the logs have none


def test_json_line_writes_null_for_non_finite_and_handles_odd_values() -> None:
    line = json_line({"a": float("nan"), "b": [float("-inf"), 1], "c": Path("/x"), "d": object.__new__(object)})
    parsed = json.loads(line)
    assert line.endswith("\n") and line.count("\n") == 1
    assert parsed["a"] is None and parsed["b"] == [None, 1] and parsed["c"] == "/x"
    assert parsed["d"].startswith("<object object")


def test_writer_never_raises_and_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    writer = JsonlWriter(blocker / "sub" / "metrics.jsonl")  # a folder under a file: OSError
    with caplog.at_level("WARNING"):
        assert writer.write({"x": 1}) is False
        assert writer.write({"x": 2}) is False
    assert len([r for r in caplog.records if "cannot write" in r.getMessage()]) == 1


# -- the callback ------------------------------------------------------------------------------


def _state(step: int = 0, max_steps: int = 100, rank0: bool = True) -> TrainerState:
    return TrainerState(global_step=step, max_steps=max_steps, is_world_process_zero=rank0, epoch=0.0)


@pytest.fixture
def args(tmp_path: Path) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(tmp_path / "staging"),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        use_cpu=True,
        report_to=[],
    )


def test_callback_writes_progress_lines_with_timing_and_eta(tmp_path: Path, args: TrainingArguments) -> None:
    clock, wall = FakeClock(50.0), FakeClock(1.7e9)
    echo = io.StringIO()
    callback = ProgressCallback(tmp_path, echo=echo, clock=clock, wall_clock=wall)
    state, control = _state(step=10), TrainerControl()  # resumed at step 10
    callback.on_train_begin(args, state, control)
    assert callback.samples_per_step == 8  # 4 per device x 2 accumulation x 1 process

    state.global_step, clock.now = 20, 80.0  # 10 steps in 30 s
    callback.on_log(args, state, control, logs=dict(TRL_LOGS))
    state.global_step, clock.now, wall.now = 30, 100.0, 1.7e9 + 20
    callback.on_log(args, state, control, logs={**TRL_LOGS, "reward": 1.5})
    callback.on_log(args, state, control, logs={"eval_reward": 0.3})  # evaluation: skipped
    callback.on_log(args, state, control, logs={"train_runtime": 5.0, "train_loss": 0.1})  # end summary: skipped

    lines = _lines(tmp_path / METRICS_FILE)
    assert [(x["event"], x["step"]) for x in lines] == [("progress", 20), ("progress", 30)]
    first, second = lines
    assert first["step_time_seconds"] == pytest.approx(3.0)
    assert first["samples_per_second"] == pytest.approx(80 / 30)
    assert first["eta_seconds"] == pytest.approx(80 * 3.0)
    assert first["timestamp"] == 1.7e9 and first["max_steps"] == 100
    assert first["rewards"]["rec_iou"] == {"mean": 0.42, "std": 0.31, "timeouts": 0.5, "errors": 0.0, "failures": None}
    assert first["rewards"]["org/judge-model"] == {
        "mean": None,
        "std": None,
        "timeouts": None,
        "errors": None,
        "failures": None,
    }
    assert (first["kl"], first["completion_length"], first["clip_ratio"]) == (0.0031, 37.25, 0.01)
    assert second["step_time_seconds"] == pytest.approx(2.0) and second["eta_seconds"] == pytest.approx(140.0)
    assert [json.loads(x) for x in echo.getvalue().splitlines()] == lines

    summary = callback.summary()
    assert (summary.step, summary.max_steps, summary.records) == (30, 100, 2)
    assert (summary.first_reward_mean, summary.last_reward_mean) == (1.295, 1.5)
    assert "reward mean: 1.2950 (first) -> 1.5000 (last)" in summary.lines()


def test_clock_restarts_when_the_first_step_begins(tmp_path: Path, args: TrainingArguments) -> None:
    clock = FakeClock(0.0)
    callback = ProgressCallback(tmp_path, samples_per_step=4, clock=clock, wall_clock=FakeClock())
    state, control = _state(step=100, max_steps=200), TrainerControl()  # resumed at step 100
    callback.on_train_begin(args, state, control)
    clock.now = 60.0  # a minute of setup: loading, skipping the batches already seen
    callback.on_step_begin(args, state, control)
    state.global_step, clock.now = 101, 62.0
    callback.on_step_begin(args, state, control)  # later steps do not move the baseline
    state.global_step, clock.now = 110, 80.0
    callback.on_log(args, state, control, logs=dict(TRL_LOGS))
    [line] = _lines(tmp_path / METRICS_FILE)
    assert line["step_time_seconds"] == pytest.approx(2.0) and line["eta_seconds"] == pytest.approx(180.0)
    assert line["samples_per_second"] == pytest.approx(2.0)


def test_first_log_without_train_begin_has_no_timing(tmp_path: Path, args: TrainingArguments) -> None:
    callback = ProgressCallback(tmp_path, samples_per_step=16, clock=FakeClock(), wall_clock=FakeClock())
    callback.on_log(args, _state(step=5), TrainerControl(), logs=dict(TRL_LOGS))
    [line] = _lines(tmp_path / METRICS_FILE)
    assert line["step"] == 5 and line["step_time_seconds"] is None and line["eta_seconds"] is None


def test_other_ranks_write_and_serve_nothing(tmp_path: Path, args: TrainingArguments) -> None:
    callback = ProgressCallback(tmp_path, metrics_port=0, clock=FakeClock(), wall_clock=FakeClock())
    state = _state(rank0=False)
    callback.on_train_begin(args, state, TrainerControl())
    state.global_step = 1
    callback.on_log(args, state, TrainerControl(), logs=dict(TRL_LOGS))
    assert callback.server_port is None
    assert not (tmp_path / METRICS_FILE).exists()
    assert callback.summary().records == 0


def test_checkpoint_report_line_and_counter(tmp_path: Path) -> None:
    callback = ProgressCallback(tmp_path, clock=FakeClock(), wall_clock=FakeClock(1.7e9))
    info = CheckpointInfo(
        path=tmp_path / "checkpoints" / "checkpoint-20",
        step=20,
        digest="sha256:" + "ab" * 32,
        metrics={"reward": 1.25, "kl": float("nan")},
        uri="s3://bucket/run/checkpoint-20",
    )
    callback.report_checkpoint(info)
    [line] = _lines(tmp_path / METRICS_FILE)
    assert line == {
        "event": "checkpoint",
        "uri": "s3://bucket/run/checkpoint-20",
        "step": 20,
        "digest": "sha256:" + "ab" * 32,
        "metrics": {"reward": 1.25, "kl": None},
        "timestamp": 1.7e9,
    }
    registry = callback.metrics.registry
    assert registry.get_sample_value("vlmr1_trainer_checkpoints_total") == 1.0
    assert registry.get_sample_value("vlmr1_trainer_last_checkpoint_step") == 20.0
    [report] = callback.summary().checkpoints
    assert (report.uri, report.step, report.digest) == (info.uri, 20, info.digest)


# -- Prometheus ----------------------------------------------------------------------------------


def test_each_metrics_object_has_its_own_registry() -> None:
    a, b = ProgressMetrics(), ProgressMetrics()  # the same names twice: no "Duplicated timeseries"
    assert a.registry is not b.registry


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text: str = response.read().decode()
    return text


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split(" ", 1)[1])
    raise AssertionError(f"{name} not in the exposition:\n{text}")


def test_metrics_server_disabled_for_none_or_negative_port() -> None:
    assert start_metrics_server(None, CollectorRegistry()) is None
    assert start_metrics_server(-1, CollectorRegistry()) is None


@pytest.fixture
def served(tmp_path: Path, args: TrainingArguments) -> Iterator[ProgressCallback]:
    callback = ProgressCallback(tmp_path, metrics_port=0, clock=FakeClock(0.0), wall_clock=FakeClock(1.7e9))
    try:
        yield callback
    finally:
        callback.close()


def test_prometheus_endpoint_serves_the_last_record(served: ProgressCallback, args: TrainingArguments) -> None:
    clock = served.clock
    assert isinstance(clock, FakeClock)
    state = _state(step=0, max_steps=50)
    served.on_train_begin(args, state, TrainerControl())
    assert served.server_port is not None and served.server_port > 0
    state.global_step, clock.now = 10, 40.0
    served.on_log(args, state, TrainerControl(), logs=dict(TRL_LOGS))

    text = _scrape(served.server_port)
    assert _sample(text, "vlmr1_trainer_step") == 10
    assert _sample(text, "vlmr1_trainer_max_steps") == 50
    assert _sample(text, "vlmr1_trainer_reward_mean") == 1.295
    assert _sample(text, "vlmr1_trainer_reward_std") == 0.5
    assert _sample(text, "vlmr1_trainer_kl") == 0.0031
    assert _sample(text, "vlmr1_trainer_completion_length") == 37.25
    assert _sample(text, "vlmr1_trainer_clip_ratio") == 0.01
    assert _sample(text, "vlmr1_trainer_learning_rate") == 9.5e-07
    assert _sample(text, "vlmr1_trainer_step_time_seconds") == 4.0
    assert _sample(text, "vlmr1_trainer_samples_per_second") == 2.0  # 10 steps x 8 completions / 40 s
    assert _sample(text, "vlmr1_trainer_eta_seconds") == 160.0
    assert _sample(text, 'vlmr1_trainer_reward_function_mean{reward="rec_iou"}') == 0.42
    assert _sample(text, 'vlmr1_trainer_reward_function_std{reward="format"}') == 0.33
    assert math.isnan(_sample(text, 'vlmr1_trainer_reward_function_mean{reward="org/judge-model"}'))
    # Scoring counts: exported once TRL logged them for a reward, absent otherwise.
    assert _sample(text, 'vlmr1_trainer_reward_function_timeouts{reward="rec_iou"}') == 0.5
    assert _sample(text, 'vlmr1_trainer_reward_function_errors{reward="rec_iou"}') == 0.0
    assert 'vlmr1_trainer_reward_function_timeouts{reward="format"}' not in text
    assert _sample(text, "vlmr1_trainer_checkpoints_total") == 0

    port = served.server_port
    served.close()
    assert served.server_port is None
    with pytest.raises(OSError):
        _scrape(port)


def test_start_metrics_server_picks_a_free_port() -> None:
    metrics = ProgressMetrics()
    started = start_metrics_server(0, metrics.registry)
    assert started is not None
    server, port = started
    try:
        metrics.checkpoint_saved(7)
        text = _scrape(port)
        assert _sample(text, "vlmr1_trainer_checkpoints_total") == 1
        assert _sample(text, "vlmr1_trainer_last_checkpoint_step") == 7
    finally:
        stop_metrics_server(server)


# -- DEBUG mode ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "flag", "expected"),
    [
        ({"DEBUG_MODE": "true"}, False, True),
        ({"DEBUG_MODE": "TRUE"}, False, True),
        ({"DEBUG_MODE": "1"}, False, True),
        ({"DEBUG_MODE": "false"}, False, False),
        ({"DEBUG_MODE": ""}, False, False),
        ({}, False, False),
        ({}, True, True),
    ],
)
def test_debug_enabled(environ: dict[str, str], flag: bool, expected: bool) -> None:
    assert debug_enabled(environ, flag=flag) is expected


GT = "<answer> [0, 0, 100, 50] </answer>"


def _batch(n: int) -> dict[str, Any]:
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where is the cat?"}]}]
    return {
        "prompts": [prompt] * n,
        "completions": [
            [{"role": "assistant", "content": f"<answer>[0,0,{10 * (i + 1)},50]</answer>"}] for i in range(n)
        ],
        "completion_ids": [[1, 2, 3]] * n,
        "solution": [GT] * n,
        "image_size": [[100, 50]] * n,
        "input_size": [[100, 50]] * n,
    }


def test_dumper_scores_like_the_reward_and_pickles(tmp_path: Path) -> None:
    reward = rewards.build("rec_iou")
    dumper = CompletionDumper(reward, tmp_path, max_per_step=2, clock=FakeClock(1.7e9))
    assert dumper.__name__ == "rec_iou"
    clone = pickle.loads(pickle.dumps(dumper))
    assert clone.__name__ == "rec_iou" and clone.max_per_step == 2

    batch = _batch(3)
    expected = reward(**batch)
    assert clone(**batch, trainer_state=_state(step=4)) == expected
    rows = _lines(tmp_path / COMPLETIONS_FILE)
    assert rows == [
        {
            "event": "completion",
            "step": 4,
            "reward": "rec_iou",
            "prompt": "Where is the cat?",
            "completion": f"<answer>[0,0,{10 * (i + 1)},50]</answer>",
            "solution": GT,
            "score": expected[i],
            "outcome": None,  # a bare reward reports none; a ScoredReward does (below)
            "timestamp": 1.7e9,
        }
        for i in range(2)  # capped at 2 per step
    ]
    assert expected == pytest.approx([0.1, 0.2, 0.3])  # IoU with the ground truth: real scores were dumped


class _Slow(rewards.Reward):
    columns = ()

    def score(self, completion: str, sample: object) -> float:  # type: ignore[override]
        deadline = time.monotonic() + (10.0 if completion == "hang" else 0.0)
        while time.monotonic() < deadline:
            pass
        return 1.0


def test_dumps_say_which_completions_ran_over_their_budget(tmp_path: Path) -> None:
    from vlmr1_trainer.rewards.scoring import ScoredReward

    dumper = CompletionDumper(ScoredReward(_Slow(), budget=0.2), tmp_path)
    assert dumper(["ok", "hang", "ok"], trainer_state=_state(step=1)) == [1.0, 0.0, 1.0]
    assert [row["outcome"] for row in _lines(tmp_path / COMPLETIONS_FILE)] == ["ok", "timeout", "ok"]


def test_dumper_cap_is_per_step(tmp_path: Path) -> None:
    dumper = CompletionDumper(rewards.build("rec_iou"), tmp_path, max_per_step=3)
    dumper(**_batch(2), trainer_state=_state(step=1))
    dumper(**_batch(2), trainer_state=_state(step=1))  # one more fits this step
    dumper(**_batch(2), trainer_state=_state(step=1))  # the cap is reached
    dumper(**_batch(5), trainer_state=_state(step=2))  # a new step: a new budget
    steps = [row["step"] for row in _lines(tmp_path / COMPLETIONS_FILE)]
    assert steps == [1, 1, 1, 2, 2, 2]


def test_dumper_on_other_ranks_or_zero_cap_only_scores(tmp_path: Path) -> None:
    reward = rewards.build("format")
    batch = {"completions": ["<think>a</think><answer>b</answer>", "nope"]}
    off = wrap_rewards([reward], tmp_path, is_main_process=False)
    zero = CompletionDumper(reward, tmp_path, max_per_step=0)
    assert off[0](**batch) == zero(**batch) == [1.0, 0.0]
    assert not (tmp_path / COMPLETIONS_FILE).exists()


def test_dumper_rejects_async_rewards_and_bad_caps(tmp_path: Path) -> None:
    async def slow(completions: list[str], **kwargs: Any) -> list[float | None]:
        return [0.0] * len(completions)

    with pytest.raises(TypeError, match="async"):
        CompletionDumper(slow, tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_per_step"):
        CompletionDumper(rewards.build("format"), tmp_path, max_per_step=-1)


def test_dumper_survives_an_unwritable_output(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    dumper = CompletionDumper(rewards.build("format"), tmp_path / "file")
    assert dumper(["<think>a</think><answer>b</answer>"]) == [1.0]


# -- with TRL's GRPOTrainer ----------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers 5 deprecations raised inside TRL
def test_grpo_trainer_run_reports_progress_and_dumps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datasets import Dataset
    from PIL import Image
    from trl import GRPOConfig, GRPOTrainer  # type: ignore[attr-defined]

    from vlmr1_trainer.vlm import get_family
    from vlmr1_trainer.vlm.builtin import ensure_builtin

    monkeypatch.setenv("VLMR1_CACHE_DIR", str(tmp_path / "cache"))
    family = get_family("qwen2.5-vl")
    path = ensure_builtin("tiny-qwen2.5-vl")
    model, processor = family.load_model(str(path)), family.load_processor(str(path))

    def image() -> Image.Image:
        im = Image.new("RGB", (56, 56), (240, 240, 240))
        im.paste((220, 20, 20), (5, 5, 20, 20))
        return im

    n = 4
    dataset = Dataset.from_dict(
        {
            "prompt": [family.build_prompt("rec", "Where is the red square?") for _ in range(n)],
            "image": [image() for _ in range(n)],
            "solution": ["<answer> [5, 5, 20, 20] </answer>"] * n,
        }
    )
    out = tmp_path / "run"
    args = GRPOConfig(
        output_dir=str(out / "staging"),
        use_cpu=True,
        bf16=False,
        max_steps=2,
        per_device_train_batch_size=2,
        num_generations=2,
        max_completion_length=8,
        logging_steps=1,
        beta=0.04,  # so that TRL logs a KL
        save_strategy="no",
        remove_unused_columns=False,
        report_to=[],
        disable_tqdm=True,
    )
    callback = ProgressCallback(out, metrics_port=0)
    reward_funcs: list[Any] = [CompletionDumper(rewards.build("rec_iou"), out, max_per_step=1), rewards.build("format")]
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        callbacks=[callback],
    )
    try:
        trainer.train()
        assert callback.server_port is not None
        text = _scrape(callback.server_port)
    finally:
        callback.close()

    progress = _lines(out / METRICS_FILE)
    assert [(x["event"], x["step"], x["max_steps"]) for x in progress] == [("progress", 1, 2), ("progress", 2, 2)]
    for line in progress:
        assert set(line["rewards"]) == {"rec_iou", "format"}  # the dumper kept the reward's name
        for key in ("reward_mean", "reward_std", "kl", "completion_length", "clip_ratio", "learning_rate"):
            assert isinstance(line[key], float), key
        assert line["step_time_seconds"] > 0 and line["samples_per_second"] > 0
    assert progress[-1]["eta_seconds"] == 0.0
    assert _sample(text, "vlmr1_trainer_step") == 2

    dumped = _lines(out / COMPLETIONS_FILE)
    assert [(row["step"], row["reward"]) for row in dumped] == [(0, "rec_iou"), (1, "rec_iou")]  # 1 per step
    assert all("Where is the red square?" in row["prompt"] and row["score"] is not None for row in dumped)
    assert callback.summary().records == 2
