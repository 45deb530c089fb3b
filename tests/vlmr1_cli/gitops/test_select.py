"""Choosing a checkpoint (best, latest, step=N) and gating it on its metrics."""

from __future__ import annotations

import pytest

from vlmr1_cli.gitops import PromoteError
from vlmr1_cli.gitops.select import (
    Candidate,
    Gate,
    Selection,
    check_gates,
    choose,
    parse_gate,
    parse_selection,
    resolve_metric,
)

EVAL = "eval/refcoco-val/rec_acc"
CANDIDATES = [
    Candidate(2, "pvc://c/run/checkpoint-2", None, {"reward": 0.4, "loss": 0.3}),
    Candidate(6, "pvc://c/run/checkpoint-6", None, {"reward": 0.7, "loss": 0.1}),
    Candidate(4, "pvc://c/run/checkpoint-4", None, {"reward": 0.7, "loss": 0.2}),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("best", Selection("best")),
        ("latest", Selection("latest")),
        ("step=40", Selection("step", 40)),
        (" step=0 ", Selection("step", 0)),
    ],
)
def test_parse_selection(text: str, expected: Selection) -> None:
    assert parse_selection(text) == expected


@pytest.mark.parametrize("text", ["", "newest", "step=", "step=-1", "step=4x", "4"])
def test_parse_selection_rejects_other_forms(text: str) -> None:
    with pytest.raises(PromoteError, match="expected best, latest or step=N"):
        parse_selection(text)


def test_latest_is_the_highest_step_whatever_the_order() -> None:
    assert choose(CANDIDATES, Selection("latest")).step == 6


def test_best_ties_go_to_the_higher_step() -> None:
    assert choose(CANDIDATES, Selection("best")).step == 6


def test_best_by_a_lower_is_better_metric() -> None:
    assert choose(CANDIDATES, Selection("best"), best_metric="loss", greater_is_better=False).step == 6
    assert choose(CANDIDATES, Selection("best"), best_metric="loss", greater_is_better=True).step == 2


def test_best_marked_by_the_source_wins() -> None:
    assert choose(CANDIDATES, Selection("best"), marked_best=2).step == 2


def test_best_without_the_metric_is_refused_with_the_alternatives() -> None:
    with pytest.raises(PromoteError, match=r"no checkpoint with a numeric 'eval/x/acc'.*steps: 2, 4, 6"):
        choose(CANDIDATES, Selection("best"), best_metric="eval/x/acc")


def test_a_missing_step_lists_the_steps() -> None:
    with pytest.raises(PromoteError, match=r"no checkpoint at step 5 \(steps: 2, 4, 6\)"):
        choose(CANDIDATES, Selection("step", 5))
    assert choose(CANDIDATES, Selection("step", 4)).uri.endswith("checkpoint-4")


def test_no_candidates() -> None:
    with pytest.raises(PromoteError, match="GRPOJob ml/rec has no checkpoints"):
        choose([], Selection("latest"), source="GRPOJob ml/rec")


@pytest.mark.parametrize(
    ("text", "gate"),
    [
        ("rec_acc>=0.85", Gate("rec_acc", ">=", 0.85)),
        ("  rec_acc >= 0.85 ", Gate("rec_acc", ">=", 0.85)),
        (f"{EVAL}>0.5", Gate(EVAL, ">", 0.5)),
        ("loss<=1e-2", Gate("loss", "<=", 0.01)),
        ("kl < 0.1", Gate("kl", "<", 0.1)),
        ("eval/gui-val/unparsed==0", Gate("eval/gui-val/unparsed", "==", 0.0)),
        ("reward!=-1", Gate("reward", "!=", -1.0)),
    ],
)
def test_parse_gate(text: str, gate: Gate) -> None:
    assert parse_gate(text) == gate


@pytest.mark.parametrize("text", ["rec_acc", "rec_acc>=", ">=0.8", "rec_acc=>0.8", "rec_acc>=high", "a>=nan", "a<inf"])
def test_parse_gate_rejects_malformed_expressions(text: str) -> None:
    with pytest.raises(PromoteError, match="--require"):
        parse_gate(text)


def test_resolve_metric_exact_then_unique_suffix() -> None:
    metrics = {"reward": 1.0, EVAL: 0.9, "eval/refcoco-val/samples": 10}
    assert resolve_metric(metrics, "reward") == "reward"
    assert resolve_metric(metrics, "rec_acc") == EVAL
    assert resolve_metric(metrics, EVAL) == EVAL


def test_resolve_metric_ambiguous_lists_candidates() -> None:
    metrics = {EVAL: 0.9, "eval/refcoco-testA/rec_acc": 0.8}
    with pytest.raises(
        PromoteError, match=r"'rec_acc' is ambiguous: .*refcoco-testA/rec_acc, eval/refcoco-val/rec_acc"
    ):
        resolve_metric(metrics, "rec_acc")


def test_resolve_metric_unknown_lists_available() -> None:
    with pytest.raises(PromoteError, match=r"no metric 'rec_acc' \(its metrics: loss, reward\)"):
        resolve_metric({"reward": 1.0, "loss": 0.1}, "rec_acc")


def test_gates_pass_with_their_measured_values() -> None:
    results = check_gates([parse_gate("rec_acc>=0.85"), parse_gate("reward > 0")], {EVAL: 0.91, "reward": 0.7})
    assert [str(r) for r in results] == [f"rec_acc ({EVAL}) = 0.91, required >= 0.85", "reward = 0.7, required > 0"]


def test_a_gate_miss_states_the_measured_value() -> None:
    with pytest.raises(PromoteError) as info:
        check_gates([parse_gate("rec_acc>=0.85"), parse_gate("loss<0.5")], {EVAL: 0.62, "loss": 0.7})
    assert f"rec_acc ({EVAL}) is 0.62, required >= 0.85" in str(info.value)
    assert "loss is 0.7, required < 0.5" in str(info.value)


def test_a_gate_on_a_non_number_cannot_pass() -> None:
    with pytest.raises(PromoteError, match="reward is None, not a number"):
        check_gates([parse_gate("reward>0")], {"reward": None})
