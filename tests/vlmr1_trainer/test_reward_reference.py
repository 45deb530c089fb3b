"""Rewards by reference: MODULE:ATTRIBUTE functions and classes, every way they can be wrong
reported before training with the reward named, and the data's own fields reaching them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vlmr1_core.config import TrainerConfig
from vlmr1_core.errors import UserError
from vlmr1_trainer import preflight, rewards
from vlmr1_trainer.rewards.reference import ReferenceReward

USER_REWARDS = """
    def exact(completions, solution, **kwargs):
        '''1.0 when the completion is the solution.'''
        return [float(c == s) for c, s in zip(completions, solution)]

    def by_field(completions, **kwargs):
        return [float(c == d) for c, d in zip(completions, kwargs["defect"])]

    exact_pool = exact

    class Threshold:
        cpu_bound = True

        def __init__(self, at=3):
            self.at = at

        def __call__(self, completions, **kwargs):
            return [float(len(c) >= self.at) for c in completions]

    def wrong_count(completions, **kwargs):
        return [1.0, 1.0]

    def not_numbers(completions, **kwargs):
        return ["good" for _ in completions]

    def raises(completions, **kwargs):
        raise ZeroDivisionError("my bug")

    def needs_column(completions, defect_list, **kwargs):
        return [0.0 for _ in completions]

    def no_completions():
        return []

    async def later(completions, **kwargs):
        return [0.0]

    CONSTANT = 3
    """


@pytest.fixture
def user_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "user_rewards.py").write_text(textwrap.dedent(USER_REWARDS))
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop("user_rewards", None)
    return folder


def test_a_function_follows_trls_contract(user_code: Path) -> None:
    reward = rewards.build("user_rewards:exact")
    assert isinstance(reward, ReferenceReward)
    assert reward.name == reward.__name__ == "user_rewards:exact"
    assert reward.columns == ("solution",)
    assert reward(["a", "b", [{"role": "assistant", "content": "c"}]], solution=["a", "a", "c"]) == [1.0, 0.0, 1.0]


def test_a_class_is_built_with_params_and_may_ask_for_the_pool(user_code: Path) -> None:
    reward = rewards.build("user_rewards:Threshold", at=2)
    assert reward.cpu_bound
    assert reward(["a", "ab", "abc"]) == [0.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("no_such_module:f", {}, "cannot import module no_such_module: ModuleNotFoundError"),
        ("user_rewards:missing", {}, "module user_rewards has no attribute 'missing' (it has: CONSTANT, Threshold"),
        ("user_rewards:exact", {"at": 1}, "is a function and takes no params (got at)"),
        ("user_rewards:Threshold", {"above": 1}, "the class does not take params {'above': 1}"),
        ("user_rewards:CONSTANT", {}, "is a int, not a function or class"),
        ("user_rewards:no_completions", {}, "takes no completions argument"),
        ("user_rewards:later", {}, "is async"),
    ],
)
def test_what_cannot_be_a_reward_is_a_user_error_naming_it(
    user_code: Path, name: str, params: dict[str, int], message: str
) -> None:
    with pytest.raises(UserError) as raised:
        rewards.build(name, **params)
    assert message in str(raised.value)
    assert name in str(raised.value)


def _config(tmp_path: Path, code: Path, names: list[str], lines: list[dict[str, object]]) -> TrainerConfig:
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return TrainerConfig.model_validate(
        {
            "model": {"uri": "builtin://tiny-qwen2.5-vl"},
            "task": "custom",
            "datasets": [{"jsonl": str(data)}],
            "rewardCode": {"uri": str(code)},
            "rewards": [{"name": n} for n in names],
        }
    )


def _line(answer: str, **extra: object) -> dict[str, object]:
    return {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": answer}], **extra}


@pytest.mark.parametrize(
    ("name", "field", "message"),
    [
        ("user_rewards:wrong_count", "spec.rewards[1].name", "returned 2 score(s) for 3 completion(s)"),
        ("user_rewards:not_numbers", "spec.rewards[1].name", "returned 'good' (str) at position 0"),
        ("user_rewards:raises", "spec.rewards[1].name", "raised on the probe batch (the first samples' answers"),
        ("user_rewards:needs_column", "spec.rewards[1].name", "reads column(s) defect_list that the data does not"),
        ("user_rewards:nope", "spec.rewards[1].name", "has no attribute 'nope'"),
        ("user_rewards:exact", None, None),
    ],
)
def test_the_probe_batch_finds_a_broken_contract_before_training(
    tmp_path: Path, user_code: Path, name: str, field: str | None, message: str | None
) -> None:
    config = _config(tmp_path, user_code, ["format", name], [_line("<answer>A</answer>"), _line("B")])
    if message is None:
        inputs = preflight.check_inputs(config)
        assert [r.name for r in inputs.rewards] == ["format", name]
        return
    with pytest.raises(UserError) as raised:
        preflight.check_inputs(config)
    assert raised.value.field == field
    assert message in str(raised.value) and name in str(raised.value)


def test_a_data_lines_own_fields_are_columns(tmp_path: Path, user_code: Path) -> None:
    lines = [_line("A", defect="A", id=1), _line("B", id=2)]  # line 2 lacks defect: None
    config = _config(tmp_path, user_code, ["user_rewards:by_field"], lines)
    dataset = preflight.check_inputs(config).dataset
    assert dataset.extra_columns == ["defect", "id"]
    assert [s.extra for s in dataset.samples] == [{"defect": "A", "id": 1}, {"id": 2}]


def test_reward_code_must_be_a_folder(tmp_path: Path, user_code: Path) -> None:
    config = _config(tmp_path, tmp_path / "absent", ["user_rewards:exact"], [_line("A")])
    with pytest.raises(UserError, match="is not a folder") as raised:
        preflight.check_inputs(config)
    assert raised.value.field == "spec.rewardCode"


def _vlmr1(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).with_name("vlmr1")
    return subprocess.run([str(cli), *args], input=stdin, capture_output=True, text=True, timeout=120)


def test_the_cli_lists_and_scores_a_reference_as_a_builtin(tmp_path: Path, user_code: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"completion": "A", "solution": "A"}\n{"completion": "B", "solution": "A"}\n')
    scored = _vlmr1("rewards", "score", "--path", str(user_code), "--reward", "user_rewards:exact", str(rows))
    assert scored.returncode == 0, scored.stderr
    assert scored.stdout.splitlines() == ['{"score": 1.0}', '{"score": 0.0}']
    pooled = _vlmr1(
        "rewards", "score", "--path", str(user_code), "--reward", "user_rewards:Threshold", "--param", "at=1", str(rows)
    )
    assert pooled.stdout.splitlines() == ['{"score": 1.0}', '{"score": 1.0}'], pooled.stderr
    listed = _vlmr1("rewards", "list", "--path", str(user_code), "--reward", "user_rewards:exact")
    assert "user_rewards:exact [0, 1]  1.0 when the completion is the solution." in listed.stdout
    assert "rec_iou" in listed.stdout


@pytest.mark.parametrize(
    ("reward", "message"),
    [
        ("user_rewards:wrong_count", "the first lines and an empty completion as one batch: reward "),
        ("user_rewards:nope", "has no attribute 'nope'"),
        ("absent_module:f", "cannot import module absent_module"),
    ],
)
def test_the_cli_rejects_a_broken_reference_with_exit_2(
    tmp_path: Path, user_code: Path, reward: str, message: str
) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"completion": "A", "solution": "A"}\n')
    result = _vlmr1("rewards", "score", "--path", str(user_code), "--reward", reward, str(rows))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
