"""User errors: one line naming the file, line or field and the fix, exit status 2, no traceback
(unless ``vlmr1 --debug``); a bug keeps its traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vlmr1_cli import crds, main
from vlmr1_core.errors import EXIT_USER_ERROR, UserError

REPO = Path(__file__).resolve().parents[2]
SHAPES = REPO / "examples" / "data" / "rec-shapes"
LOCAL_JOB = (REPO / "examples" / "grpojob-rec-local.yaml").read_text()


def vlmr1(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real entry point, in a fresh process (what a user sees, tracebacks included)."""
    return subprocess.run(
        [sys.executable, "-m", "vlmr1_cli", *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, **env},
    )  # fmt: skip


def job_file(tmp_path: Path, *replacements: tuple[str, str]) -> tuple[Path, str]:
    """The local REC example with absolute data paths and ``replacements`` applied; its text."""
    text = LOCAL_JOB.replace("data/rec-shapes", str(SHAPES))
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path, text


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


@pytest.fixture
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    from vlmr1_trainer.vlm.base import VLMFamily

    def fail(*args: Any, **kwargs: Any) -> Any:
        pytest.fail("a model was loaded before the inputs were checked")

    monkeypatch.setattr(VLMFamily, "load_model", fail)
    monkeypatch.setattr(VLMFamily, "load_processor", fail)


# -- the one place that prints them ---------------------------------------------------------------


def raising(exc: BaseException) -> Any:
    def handler(args: Any) -> int:
        raise exc

    return handler


def test_a_user_error_is_one_line_on_stderr_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(crds, "run", raising(UserError("it is wrong", field="spec.x", fix="make it right")))
    assert main(["crds"]) == EXIT_USER_ERROR == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", "vlmr1 crds: spec.x: it is wrong; to fix: make it right\n")


def test_an_error_in_a_file_starts_with_file_and_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(crds, "run", raising(UserError("bad", file="a.yaml", line=3, field="spec.x")))
    assert main(["crds"]) == 2
    assert capsys.readouterr().err == "a.yaml:3: spec.x: bad\n"


@pytest.mark.parametrize("how", [["--debug"], "VLMR1_DEBUG"])
def test_debug_adds_the_traceback(
    how: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(crds, "run", raising(UserError("it is wrong")))
    if how == "VLMR1_DEBUG":
        monkeypatch.setenv("VLMR1_DEBUG", "1")
    assert main([*(how if isinstance(how, list) else []), "crds"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "raise exc" in err and err.endswith("vlmr1 crds: it is wrong\n")


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crds, "run", raising(KeyError("a bug")))
    with pytest.raises(KeyError, match="a bug"):
        main(["crds"])


def test_a_message_given_to_system_exit_is_a_user_error_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(crds, "run", raising(SystemExit("create the peering object")))
    assert main(["crds"]) == 2
    assert capsys.readouterr().err == "vlmr1 crds: create the peering object\n"
    monkeypatch.setattr(crds, "run", raising(SystemExit(3)))
    with pytest.raises(SystemExit) as info:  # a status is passed on as it is
        main(["crds"])
    assert info.value.code == 3


def test_a_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    real = importlib.import_module

    def no_torch(name: str) -> Any:
        if name.startswith("vlmr1_trainer."):  # as in the operator image: the trainer's torch is absent
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
        return real(name)

    monkeypatch.setattr(importlib, "import_module", no_torch)
    assert main(["rewards", "list"]) == 2
    assert capsys.readouterr().err == (
        "vlmr1 rewards list: this installation lacks torch; to fix: install the trainer extra: "
        "pip install 'vlmr1[trainer]'\n"
    )


# -- validate ----------------------------------------------------------------------------------------


def test_validate_rejects_an_unknown_reward_with_file_line_field_and_a_suggestion(tmp_path: Path) -> None:
    path, text = job_file(tmp_path, ("- name: rec_format", "- name: rec_formt"))
    proc = vlmr1("validate", str(path))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    (message,) = proc.stderr.splitlines()
    assert message.startswith(
        f"{path}:{line_of(text, 'rec_formt')}: spec.rewards[1].name: unknown reward 'rec_formt'; "
        "did you mean 'rec_format'? (known rewards: accuracy, all_match, format,"
    )


def test_validate_accepts_a_custom_image_s_rewards_when_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = job_file(tmp_path, ("- name: rec_format", "- name: my_reward"))
    assert main(["validate", str(path)]) == 2
    assert "spec.rewards[1].name: unknown reward 'my_reward'" in capsys.readouterr().err
    assert main(["validate", "--extra-reward", "my_reward", str(path)]) == 0


def test_validate_exit_status_is_2_for_any_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = REPO / "examples" / "grpojob-rec-local.yaml"
    assert main(["validate", str(good), str(tmp_path / "nope.yaml")]) == 2
    out, err = capsys.readouterr()
    assert "is valid" in out  # the good file is still reported
    assert err == f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory\n"


# -- run -----------------------------------------------------------------------------------------------


def test_run_with_a_missing_dataset_file_names_the_yaml_line(tmp_path: Path) -> None:
    path, text = job_file(tmp_path, (f"{SHAPES}/train.jsonl", str(tmp_path / "nope.jsonl")))
    proc = vlmr1("run", str(path), "--output", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr == (
        f"{path}:{line_of(text, 'nope.jsonl')}: spec.datasets[0].jsonl: dataset file {tmp_path / 'nope.jsonl'} "
        "does not exist; to fix: correct the path\n"
    )


@pytest.mark.usefixtures("no_model_load")
def test_run_with_a_missing_image_names_the_jsonl_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = (SHAPES / "train.jsonl").read_text().splitlines()[:3]
    lines[2] = json.dumps(json.loads(lines[2]) | {"image": "gone.png"})
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    path, _ = job_file(tmp_path, (f"{SHAPES}/train.jsonl", str(tmp_path / "train.jsonl")))
    assert main(["run", str(path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{tmp_path / 'train.jsonl'}:3: image {SHAPES / 'images' / 'gone.png'} does not exist; ")
    assert "to fix: correct or remove the line, or set spec.onBadSample: skip" in err
    assert "Traceback" not in err


@pytest.mark.usefixtures("no_model_load")
def test_run_with_a_missing_evaluation_file_fails_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, text = job_file(tmp_path, (f"{SHAPES}/val.jsonl", "/nowhere/val.jsonl"))
    assert main(["run", str(path), "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith(
        f"{path}:{line_of(text, '/nowhere/val.jsonl')}: spec.evaluation.datasets[0].jsonl: dataset file "
    )


@pytest.mark.usefixtures("no_model_load")
def test_run_with_an_unknown_reward_or_parameter_names_the_yaml_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, text = job_file(tmp_path, ("- name: rec_iou", "- name: rec_iuo"))
    assert main(["run", str(path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:{line_of(text, 'rec_iuo')}: spec.rewards[0].name: unknown reward 'rec_iuo'; ")
    assert "did you mean 'rec_iou'?" in err

    path, text = job_file(tmp_path, ("- name: rec_iou", "- name: rec_iou\n      params: {lenient: true}"))
    assert main(["run", str(path), "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith(
        f"{path}:{line_of(text, 'params:')}: spec.rewards[0].params: reward 'rec_iou' has no parameter lenient"
    )


@pytest.mark.usefixtures("no_model_load")
def test_run_debug_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = job_file(tmp_path, (f"{SHAPES}/train.jsonl", str(tmp_path / "nope.jsonl")))
    assert main(["--debug", "run", str(path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last):" in err and "preflight.py" in err
    assert err.splitlines()[-1].startswith(f"{path}:")


def test_run_with_a_bad_local_world_names_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Valid on the file's two nodes (8 completions per step), not on one local process (4).
    path, text = job_file(tmp_path, ("numGenerations: 4", "numGenerations: 8"), ("nodes: 1", "nodes: 2"))
    assert main(["run", str(path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:{line_of(text, 'numGenerations')}: spec.grpo.numGenerations: with 1 node(s) x 1 ")
    assert "to fix: change --nnodes/--nproc-per-node" in err


def test_an_unreachable_hub_is_one_line(tmp_path: Path) -> None:
    path, text = job_file(
        tmp_path, ("uri: builtin://tiny-qwen2.5-vl", "uri: hf://nobody/nothing\n    family: qwen2.5-vl")
    )
    proc = vlmr1("run", str(path), "--output", str(tmp_path / "out"), HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    (message,) = proc.stderr.splitlines()
    assert message.startswith(
        f"{path}:{line_of(text, 'hf://nobody')}: spec.model.uri: cannot load model hf://nobody/nothing: "
    )
    assert "HF_HUB_OFFLINE=1 reads only the cache" in message


# -- eval, checkpoints, operator --------------------------------------------------------------------


def test_eval_checks_its_data_before_loading_the_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vlmr1_trainer.evaluation import policy

    monkeypatch.setattr(policy, "load_policy", lambda *a, **k: pytest.fail("the model was loaded first"))
    missing = tmp_path / "val.jsonl"
    assert main(["eval", "--checkpoint", "builtin://tiny-qwen2.5-vl", "--task", "rec", "--data", str(missing)]) == 2
    assert capsys.readouterr().err == (
        f"vlmr1 eval: --data: dataset file {missing} does not exist; to fix: correct the path\n"
    )


def test_eval_refuses_a_checkpoint_whose_digest_does_not_match(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vlmr1_core.checkpoints import save_checkpoint
    from vlmr1_core.config import TrainerConfig

    config = TrainerConfig.model_validate({"model": {"uri": "builtin://tiny-qwen2.5-vl"}, "datasets": [{"jsonl": "x"}]})
    info = save_checkpoint(tmp_path, 1, lambda d: (d / "model.safetensors").write_text("w"), config=config)
    (info.path / "model.safetensors").write_text("tampered")
    data = f"{SHAPES / 'val.jsonl'}:{SHAPES / 'images'}"
    assert main(["eval", "--checkpoint", str(info.path), "--task", "rec", "--data", data]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vlmr1 eval: {info.path} does not verify against its manifest: changed: model.safetensors")
    assert "Traceback" not in err


def test_checkpoints_on_a_folder_that_is_not_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["checkpoints", "verify", str(tmp_path / "nope")]) == 2
    assert main(["checkpoints", "list", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"vlmr1 checkpoints: {tmp_path / 'nope'} is not a folder\n" * 2


def test_the_operator_names_a_bad_setting_and_missing_credentials(tmp_path: Path) -> None:
    bare = {"KUBECONFIG": str(tmp_path / "no-kubeconfig")}
    off = ("operator", "--standalone", "--metrics-port", "-1", "--liveness-port", "-1")
    proc = vlmr1(*off, VLMR1_OPERATOR_MASTER_PORT="http", **bare)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("vlmr1 operator: VLMR1_OPERATOR_MASTER_PORT: Input should be a valid integer")
    proc = vlmr1(*off, VLMR1_OPERATOR_TRAINER_IMAGES="{cpu: x}", **bare)
    assert proc.returncode == 2
    assert proc.stderr.startswith("vlmr1 operator: VLMR1_OPERATOR_TRAINER_IMAGES: not valid JSON")
    proc = vlmr1(*off, **bare)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("vlmr1 operator: no Kubernetes credentials")
    assert "set KUBECONFIG" in proc.stderr
