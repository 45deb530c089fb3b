"""``vlmr1 rewards list`` and ``vlmr1 rewards score``, through an argparse parser built like vlmr1's."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vlmr1_cli import rewards as cli


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="vlmr1")
    cli.register(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    code = args.handler(args)
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_list_names_every_reward(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["rewards", "list"], capsys)
    assert code == 0
    names = [line.split()[0] for line in out.splitlines() if not line.startswith(" ")]
    assert "rec_iou" in names and "od_ap" in names and "length_cosine" in names
    assert "params: lenient_boxes=False, threshold=0.5" in out


def test_score_prints_one_line_per_input_in_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = "<answer> [0, 0, 100, 50] </answer>"
    path = write(
        tmp_path,
        [
            json.dumps({"completion": "<answer>[0,0,100,50]</answer>", "solution": gt}),
            json.dumps(
                {
                    "completion": "<answer>[0,0,28,28]</answer>",
                    "solution": gt,
                    "image_size": [100, 50],
                    "input_size": [28, 28],
                }
            ),
            json.dumps({"completion": "nothing", "solution": gt}),
            json.dumps({"completion": "<answer>[0,0,1,1]</answer>", "solution": "no tags"}),
            json.dumps(
                {"completion": [{"role": "assistant", "content": "<answer>[0,0,100,50]</answer>"}], "solution": gt}
            ),
        ],
    )
    code, out, err = run(["rewards", "score", "--reward", "rec_iou", str(path)], capsys)
    assert code == 0
    assert out.splitlines() == [
        '{"score": 1.0}',
        '{"score": 1.0}',
        '{"score": 0.0}',
        '{"score": null}',
        '{"score": 1.0}',
    ]
    assert f"{path}:4: malformed ground truth" in err


def test_score_with_params_and_accuracy_methods(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(
        tmp_path,
        [
            json.dumps(
                {"completion": "<answer>B</answer>", "solution": "<answer> B </answer>", "accu_reward_method": "mcq"}
            ),
            json.dumps(
                {"completion": "<answer>[ 0, 0, 10, 10]</answer>", "solution": "<answer> [0, 0, 10, 10] </answer>"}
            ),
        ],
    )
    code, out, _ = run(["rewards", "score", "--reward", "accuracy", str(path)], capsys)
    assert code == 0 and out.splitlines()[0] == '{"score": 1.0}'
    path = write(
        tmp_path,
        [
            json.dumps(
                {"completion": "<answer>[ 0, 0, 10, 10]</answer>", "solution": "<answer> [0, 0, 10, 10] </answer>"}
            )
        ],
    )
    _, out, _ = run(["rewards", "score", "--reward", "rec_iou", "--param", "lenient_boxes=true", str(path)], capsys)
    assert out == '{"score": 1.0}\n'


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{oops", "in.jsonl:2: not valid JSON"),
        ("[1]", "in.jsonl:2: expected a JSON object, got list"),
        ('{"solution": "x"}', "in.jsonl:2: 'completion' must be a string"),
        ('{"completion": "x", "solution": 3}', "in.jsonl:2: 'solution' must be a string"),
        ('{"completion": "x"}', "in.jsonl:2: reward mcq needs a 'solution' string"),
        ("", "in.jsonl:2: empty line"),
    ],
)
def test_malformed_line_names_its_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    path = write(tmp_path, [json.dumps({"completion": "A", "solution": "<answer> A </answer>"}), line])
    code, out, err = run(["rewards", "score", "--reward", "mcq", str(path)], capsys)
    assert code == 2
    assert out == ""
    assert message in err


def test_unknown_reward_and_parameter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, [])
    code, _, err = run(["rewards", "score", "--reward", "iou", str(path)], capsys)
    assert code == 2 and "unknown reward 'iou'; did you mean 'rec_iou'? (known rewards: accuracy" in err
    code, _, err = run(["rewards", "score", "--reward", "rec_iou", "--param", "lenient=1", str(path)], capsys)
    assert code == 2 and "has no parameter lenient" in err
    code, _, err = run(["rewards", "score", "--reward", "rec_iou", "--param", "novalue", str(path)], capsys)
    assert code == 2 and "--param expects KEY=VALUE" in err
    code, _, err = run(["rewards", "score", "--reward", "rec_iou", str(tmp_path / "missing.jsonl")], capsys)
    assert code == 2 and "missing.jsonl" in err


def test_reads_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"completion": "<think>a</think><answer>b</answer>"}\n'))
    code, out, _ = run(["rewards", "score", "--reward", "format", "-"], capsys)
    assert code == 0 and out == '{"score": 1.0}\n'


def test_register_imports_nothing_heavy() -> None:
    code = (
        "import argparse, sys; from vlmr1_cli import rewards as cli; "
        "cli.register(argparse.ArgumentParser().add_subparsers()); "
        "print(sorted(m for m in ('vlmr1_trainer.rewards', 'numpy', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
