"""The registry and the TRL calling convention."""

from __future__ import annotations

import pickle

import pytest

from vlmr1_trainer import rewards
from vlmr1_trainer.rewards.registry import Reward, register

EXPECTED = {
    "format", "rec_format", "rec_iou", "rec_acc", "od_ap", "od_ap50", "od_length", "od_weighted_sum",
    "accuracy", "math", "mcq", "yes_no", "all_match", "repetition", "length_cosine",
}  # fmt: skip


def test_every_issue_reward_is_registered() -> None:
    assert set(rewards.available()) >= EXPECTED
    assert rewards.available() == sorted(rewards.available())


def test_duplicate_name_rejected() -> None:
    with pytest.raises(ValueError, match="'format' is registered twice"):

        @register("format")
        class Again(Reward):
            pass


def test_unknown_name_suggests_one_and_lists_known_ones() -> None:
    with pytest.raises(
        rewards.UnknownRewardError,
        match=r"unknown reward 'iou'; did you mean 'rec_iou'\? \(known rewards: accuracy, all_match",
    ):
        rewards.build("iou")


def test_unknown_parameter_lists_accepted_ones() -> None:
    with pytest.raises(ValueError, match="no parameter thresh; its parameters: lenient_boxes, threshold"):
        rewards.build("rec_acc", thresh=0.7)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_rewards_are_named_picklable_callables(name: str) -> None:
    reward = rewards.build(name)
    assert reward.__name__ == name
    clone = pickle.loads(pickle.dumps(reward))
    assert clone.__name__ == name
    assert isinstance(clone, Reward)
    assert repr(clone).startswith(type(reward).__name__ + "(")


def test_trl_keyword_arguments_are_accepted_and_ignored() -> None:
    reward = rewards.build("rec_iou")
    logged: list[object] = []
    scores = reward(
        prompts=[[{"role": "user", "content": "q"}]] * 2,
        completions=[[{"role": "assistant", "content": "<answer>[0,0,10,10]</answer>"}], "<answer>x</answer>"],
        completion_ids=[[1, 2, 3], [4]],
        solution=["<answer> [0, 0, 10, 10] </answer>"] * 2,
        images=[[], []],
        problem=["q", "q"],
        accu_reward_method=["default", "default"],
        trainer_state=object(),
        log_extra=logged.append,
        log_metric=lambda name, value: None,
    )
    assert scores == [1.0, 0.0]


def test_column_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="column 'solution' must be a list of 2 values"):
        rewards.build("mcq")(["A", "B"], solution=["<answer> A </answer>"])


@pytest.mark.parametrize(
    ("completion", "text"),
    [
        ("plain", "plain"),
        ([{"role": "assistant", "content": "c"}], "c"),
        ([{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}], "ab"),
        (
            [
                {"role": "assistant", "content": "a"},
                {"role": "tool", "content": "t"},
                {"role": "assistant", "content": "b"},
            ],
            "ab",
        ),
        ({"role": "assistant", "content": "d"}, "d"),
        (None, ""),
        (42, ""),
        ([{"role": "assistant", "content": None}], ""),
    ],
)
def test_completion_text(completion: object, text: str) -> None:
    assert rewards.completion_text(completion) == text


def test_malformed_ground_truth_is_none_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    scores = rewards.build("rec_iou")(["<answer>[0,0,1,1]</answer>"], solution=["[0, 0, 1, 1]"])
    assert scores == [None]
    assert "malformed ground truth" in caplog.text


class _Wild(Reward):
    columns = ()

    def score(self, completion: str, sample: object) -> float:  # type: ignore[override]
        if completion == "boom":
            raise RuntimeError("bug")
        return float(completion)


def test_non_finite_score_becomes_zero_and_bugs_score_zero(caplog: pytest.LogCaptureFixture) -> None:
    assert _Wild()(["inf", "nan", "0.25", "boom"]) == [0.0, 0.0, 0.25, 0.0]
    value, problem = _Wild().score_checked("nan", {})
    assert value == 0.0
    assert problem == "non-finite score nan replaced by 0.0"
    assert "raised RuntimeError" in caplog.text


def test_known_rewards_list_matches_the_registry() -> None:
    """The registry is the source of truth; config.KNOWN_REWARDS mirrors it for what cannot import
    the trainer: `vlmr1 validate` and the operator check spec.rewards against it."""
    from vlmr1_core.reward_config import KNOWN_REWARDS
    from vlmr1_trainer.rewards import available

    assert {name for name in available() if not name.startswith("test_")} == KNOWN_REWARDS
