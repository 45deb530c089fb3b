"""`vlmr1 validate` and the rewards a job brings: built-in names are checked against the registry,
a MODULE:ATTRIBUTE reference is imported here when it can be (a local rewardCode.uri folder first
on the path) and must name a function or class; one that cannot be imported here is a note, not
an error (the trainer checks it before its first step)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vlmr1_cli import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))

JOB = """\
apiVersion: vlmr1.io/v1alpha1
kind: GRPOJob
metadata:
  name: j
spec:
  model:
    uri: hf://Qwen/Qwen2.5-VL-3B-Instruct
  datasets:
    - jsonl: a.jsonl
"""

CODE = """\
THRESHOLD = 0.5


def exact(completions, solution, **kwargs):
    return [float(c == s) for c, s in zip(completions, solution)]


class Judge:
    def __init__(self, strict=False):
        self.strict = strict

    def __call__(self, completions, **kwargs):
        return [0.0 for _ in completions]
"""


def manifest(rewards: str, reward_code: str = "") -> str:
    return JOB + reward_code + "  rewards:\n" + "".join(f"    - {line}\n" for line in rewards.split(";"))


LOCAL_CODE = "  rewardCode:\n    uri: ./rewards\n"
CASES = {
    # name: (rewards, rewardCode block, exit code, in stdout, in stderr)
    "built-in names": ("name: format;name: rec_iou", "", 0, "GRPOJob j is valid", ""),
    "a built-in typo fails": ("name: rec_iuo", "", 2, "", "spec.rewards[0].name: unknown reward 'rec_iuo'"),
    "a function in the local reward code": ("name: format;name: vlmr1_test_rewards:exact", LOCAL_CODE, 0,
                                            "GRPOJob j is valid", ""),
    "a class in the local reward code": ("name: vlmr1_test_rewards:Judge", LOCAL_CODE, 0, "GRPOJob j is valid", ""),
    "a missing attribute fails at its line": ("name: format;name: vlmr1_test_rewards:exakt", LOCAL_CODE, 2, "",
                                              ":14: spec.rewards[1].name: vlmr1_test_rewards:exakt: module "
                                              "vlmr1_test_rewards has no attribute 'exakt'"),
    "a constant is no reward": ("name: vlmr1_test_rewards:THRESHOLD", LOCAL_CODE, 2, "",
                                "vlmr1_test_rewards:THRESHOLD: THRESHOLD is a float, not a function or class"),
    "not importable here is a note": ("name: format;name: vlmr1_absent_pkg.mod:fn", "", 0,
                                      "GRPOJob j: spec.rewards[1].name vlmr1_absent_pkg.mod:fn not checked here "
                                      "(ModuleNotFoundError: No module named 'vlmr1_absent_pkg'); the trainer "
                                      "checks it before the first step", ""),
    "code in a ConfigMap is a note": ("name: vlmr1_test_rewards:exact", "  rewardCode:\n    configMap: rw\n", 0,
                                      "not checked here (ModuleNotFoundError", ""),
    "code on a claim is a note": ("name: vlmr1_test_rewards:exact", "  rewardCode:\n    uri: pvc://code/rw\n", 0,
                                  "not checked here (ModuleNotFoundError", ""),
    "a missing local folder is a note": ("name: vlmr1_test_rewards:exact", "  rewardCode:\n    uri: ./nowhere\n", 0,
                                         "spec.rewardCode.uri", ""),
    "a module failing on import is a note": ("name: vlmr1_test_broken:fn", LOCAL_CODE, 0,
                                             "not checked here (RuntimeError: needs a GPU)", ""),
    "a remote reward is a label": ("{name: judge, remote: {url: 'http://judge:8000/score'}}", "", 0,
                                   "GRPOJob j is valid", ""),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=str)
def test_validate_rewards(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rewards, reward_code, code, out, err = CASES[case]
    (tmp_path / "rewards").mkdir()
    (tmp_path / "rewards" / "vlmr1_test_rewards.py").write_text(CODE)
    (tmp_path / "rewards" / "vlmr1_test_broken.py").write_text("raise RuntimeError('needs a GPU')\n")
    path = tmp_path / "job.yaml"
    path.write_text(manifest(rewards, reward_code))
    assert main(["validate", str(path)]) == code
    captured = capsys.readouterr()
    assert out in captured.out and err in captured.err, captured
    if code == 0:
        assert captured.err == ""
    # The check leaves nothing behind: no import path entry, no module, no bytecode in the folder.
    assert str(tmp_path / "rewards") not in sys.path
    assert "vlmr1_test_rewards" not in sys.modules
    assert not (tmp_path / "rewards" / "__pycache__").exists()


def test_each_file_imports_from_its_own_reward_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two jobs whose folders hold a module of the same name: each is checked against its own."""
    paths = []
    for name, attribute in (("one", "first"), ("two", "second")):
        (tmp_path / name / "rewards").mkdir(parents=True)
        (tmp_path / name / "rewards" / "vlmr1_same.py").write_text(
            f"def {attribute}(completions, **kw):\n    return []\n"
        )
        paths.append(tmp_path / name / "job.yaml")
        paths[-1].write_text(manifest(f"name: vlmr1_same:{attribute}", LOCAL_CODE))
    assert main(["validate", *map(str, paths)]) == 0
    assert capsys.readouterr().out.count("is valid") == 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.endswith(" is valid\n")
    if path.name == "grpojob-gui-custom-reward.yaml":
        # Its reward code ships in a ConfigMap: not importable here, said so, not an error.
        assert "spec.rewards[0].name gui_defects:defect_f1 not checked here" in out
