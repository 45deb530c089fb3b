"""The worked custom reward (examples/rewards/gui_defects.py) and docs/rewards.md, which must not
drift from the code: its built-in table against the registry, its GRPOJob against the API, its
`vlmr1 rewards score` output and its remote endpoint against the real client."""

from __future__ import annotations

import doctest
import importlib.util
import inspect
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from vlmr1_core.api.grpojob import GRPOJob
from vlmr1_core.api.manifest import load_manifests
from vlmr1_core.reward_config import KNOWN_REWARDS, RemoteRewardSpec
from vlmr1_trainer import rewards
from vlmr1_trainer.rewards.reference import ReferenceParamsError, ReferenceReward, probe
from vlmr1_trainer.rewards.remote import RemoteReward, RemoteRewardError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_REWARDS = REPO / "examples" / "rewards"
DOC = REPO / "docs" / "rewards.md"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gui_defects_example", EXAMPLE_REWARDS / "gui_defects.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gui_defects = load_example()

GT = "<answer> missing button, text overlap </answer>"
NONE_GT = "<answer> no defect </answer>"


def chat(*contents: Any, role: str = "assistant") -> list[dict[str, Any]]:
    return [{"role": role, "content": c} for c in contents]


CASES: list[tuple[str, Any, Any, float | None]] = [
    ("exact", "<answer>missing button, text overlap</answer>", GT, 1.0),
    ("order, case, dots, spaces", "<answer>Text   Overlap.;MISSING BUTTON</answer>", GT, 1.0),
    ("newline separates", "<answer>text overlap\nmissing button</answer>", GT, 1.0),
    ("think first", "<think>a, b</think><answer>missing button, text overlap</answer>", GT, 1.0),
    ("one of two", "<answer>missing button</answer>", GT, 2 / 3),
    ("one right, one wrong", "<answer>missing button, wrong icon</answer>", GT, 0.5),
    ("one right of three predicted", "<answer>missing button, wrong icon, blur</answer>", GT, 0.4),
    ("duplicates count once", "<answer>missing button, missing button</answer>", GT, 2 / 3),
    ("all wrong", "<answer>wrong icon</answer>", GT, 0.0),
    ("says no defect", "<answer>no defect</answer>", GT, 0.0),
    ("no answer block", "missing button, text overlap", GT, 0.0),
    ("unclosed block", "<answer>missing button, text overlap", GT, 0.0),
    ("empty block", "<answer> </answer>", GT, 0.0),
    ("only separators", "<answer> , ; </answer>", GT, 0.0),
    ("empty completion", "", GT, 0.0),
    ("last block counts", "<answer>wrong icon</answer><answer>missing button, text overlap</answer>", GT, 1.0),
    ("no-defect words next to labels are ignored", "<answer>missing button, none</answer>", GT, 2 / 3),
    ("both no defect", "<answer>None.</answer>", NONE_GT, 1.0),
    ("no defects", "<answer>no defects</answer>", NONE_GT, 1.0),
    ("defect where there is none", "<answer>wrong icon</answer>", NONE_GT, 0.0),
    ("chat message", chat("<answer>missing button, text overlap</answer>"), GT, 1.0),
    ("chat content parts", chat([{"type": "text", "text": "<answer>text overlap</answer>"}]), GT, 2 / 3),
    ("chat assistant turns joined", chat("<answer>missing button", ", text overlap</answer>"), GT, 1.0),
    ("chat non-assistant turn ignored", chat("<answer>text overlap</answer>", role="tool"), GT, 0.0),
    ("chat single message dict", {"role": "assistant", "content": "<answer>text overlap</answer>"}, GT, 2 / 3),
    ("malformed GT: not a string", "<answer>missing button</answer>", None, None),
    ("malformed GT: a list", "<answer>missing button</answer>", ["missing button"], None),
    ("malformed GT: no answer block", "<answer>missing button</answer>", "missing button", None),
    ("malformed GT: empty answer", "<answer>missing button</answer>", "<answer>  </answer>", None),
    ("malformed GT: only separators", "<answer>missing button</answer>", "<answer> ,; </answer>", None),
]


@pytest.mark.parametrize(("completion", "solution", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_defect_f1(completion: Any, solution: Any, expected: float | None) -> None:
    [score] = gui_defects.defect_f1([completion], solution=[solution])
    if expected is None:
        assert score is None
    else:
        assert score == pytest.approx(expected, abs=1e-12)


def test_defect_f1_scores_a_batch_in_order_and_ignores_other_columns() -> None:
    completions = [c[1] for c in CASES]
    solutions = [c[2] for c in CASES]
    scores = gui_defects.defect_f1(completions, solutions, image_size=[None] * len(CASES), problem=[""] * len(CASES))
    assert scores == [gui_defects.defect_f1([c], [s])[0] for c, s in zip(completions, solutions, strict=True)]


def test_long_adversarial_completion_is_fast() -> None:
    completion = "<answer>" * 20_000 + "x" * 100_000
    start = time.perf_counter()
    assert gui_defects.defect_f1([completion], [GT]) == [0.0]
    assert time.perf_counter() - start < 0.5


def test_module_doctests() -> None:
    result = doctest.testmod(gui_defects)
    assert result.attempted >= 3
    assert result.failed == 0


@pytest.fixture
def example_on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """examples/rewards first on the import path, as spec.rewardCode puts it; gui_defects forgotten after."""
    monkeypatch.syspath_prepend(str(EXAMPLE_REWARDS))
    monkeypatch.delitem(sys.modules, "gui_defects", raising=False)
    yield
    sys.modules.pop("gui_defects", None)


@pytest.mark.usefixtures("example_on_path")
def test_vlmr1_builds_the_reference_and_it_passes_the_probe() -> None:
    reward = rewards.build("gui_defects:defect_f1")
    assert isinstance(reward, ReferenceReward)
    assert reward.columns == ("solution",)
    assert not reward.cpu_bound
    samples = [{"solution": GT}, {"solution": NONE_GT}, {"solution": GT}]
    probe(reward, ["missing button", "<answer>no defect</answer>", ""], samples)
    assert reward(["<answer>missing button</answer>", chat("<answer>none</answer>")], solution=[GT, NONE_GT]) == [
        pytest.approx(2 / 3),
        1.0,
    ]
    with pytest.raises(ReferenceParamsError, match="takes no params"):
        rewards.build("gui_defects:defect_f1", beta=1)


# --- docs/rewards.md ---------------------------------------------------------------------------


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def fenced(language: str) -> list[str]:
    """The contents of the doc's fenced blocks in ``language``."""
    return re.findall(rf"^```{language}\n(.*?)^```$", doc_text(), flags=re.MULTILINE | re.DOTALL)


def builtin_table() -> dict[str, list[str]]:
    """name -> the other cells of the doc's built-in rewards table."""
    section = doc_text().split("\n## Built-in rewards\n", 1)[1]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        match = re.fullmatch(r"\| `([a-z0-9_]+)` \|(.*)\|", line)
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} has two rows"
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def shown(value: Any) -> str:
    """A default as the table writes it: strings in double quotes, the rest as Python writes them."""
    return json.dumps(value) if isinstance(value, str) else repr(value)


def test_builtin_table_names_every_registered_reward() -> None:
    # KNOWN_REWARDS is the registry's built-ins (test_reward_registry keeps them equal); other
    # tests register rewards of their own in the same process.
    assert set(builtin_table()) == KNOWN_REWARDS


@pytest.mark.parametrize("name", sorted(KNOWN_REWARDS))
def test_builtin_table_row_matches_the_class(name: str) -> None:
    value_range, columns, params, pool, summary = builtin_table()[name]
    cls = rewards.reward_class(name)
    low, high = cls.value_range
    assert value_range == f"[{low:g}, {high:g}]"
    assert tuple(re.findall(r"`(\w+)`", columns)) == cls.columns
    signature = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    assert re.findall(r"`(\w+)=([^`]*)`", params) == [(p.name, shown(p.default)) for p in signature]
    assert pool == ("yes" if cls.cpu_bound else "")
    assert summary


def test_doc_grpojobs_are_valid(tmp_path: Path) -> None:
    jobs = [block for block in fenced("yaml") if "kind: GRPOJob" in block]
    assert jobs
    for i, block in enumerate(jobs):
        path = tmp_path / f"job-{i}.yaml"
        path.write_text(block, encoding="utf-8")
        [job] = load_manifests(path)
        assert isinstance(job, GRPOJob)
        assert job.spec.reward_code is not None and job.spec.reward_code.config_map == "gui-rewards"


def test_doc_remote_reward_spec_is_valid() -> None:
    [block] = [b for b in fenced("yaml") if "remote:" in b]
    remote = re.search(r"^      remote:\n(.*)", block, flags=re.MULTILINE | re.DOTALL)
    assert remote is not None
    lines = [line[8:] for line in remote.group(1).splitlines()]
    spec = RemoteRewardSpec.model_validate(yaml.safe_load("\n".join(lines)))
    default = RemoteRewardSpec(url=spec.url)
    # The doc spells out the defaults it states in prose.
    for field in ("timeout_seconds", "batch_size", "concurrency", "max_retries", "backoff_seconds", "on_failure"):
        assert getattr(spec, field) == getattr(default, field), field


def test_doc_score_example_is_what_vlmr1_prints(tmp_path: Path) -> None:
    [data] = fenced("jsonl")
    [console] = [b for b in fenced("console") if "rewards score" in b]
    command, *expected = console.strip().splitlines()
    assert command.split() == [
        "$",
        "PYTHONPATH=examples/rewards",
        *("vlmr1", "rewards", "score", "--reward", "gui_defects:defect_f1", "completions.jsonl"),
    ]
    path = tmp_path / "completions.jsonl"
    path.write_text(data, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLE_REWARDS), os.environ.get("PYTHONPATH", "")])}
    main = "import sys; from vlmr1_cli import main; sys.exit(main())"
    argv = [sys.executable, "-c", main, "rewards", "score", "--reward", "gui_defects:defect_f1", str(path)]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == expected


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def judge(tmp_path: Path) -> Iterator[str]:
    """The doc's minimal endpoint, run as written, with JUDGE_TOKEN=s3cret; yields its URL."""
    [source] = [b for b in fenced("python") if b.startswith("# judge.py")]
    script = tmp_path / "judge.py"
    script.write_text(source, encoding="utf-8")
    port = free_port()
    env = {**os.environ, "PORT": str(port), "JUDGE_TOKEN": "s3cret", "PYTHONPATH": str(EXAMPLE_REWARDS)}
    server = subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert server.poll() is None, "the doc's endpoint exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the doc's endpoint did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/score"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_doc_endpoint_answers_the_remote_protocol(judge: str) -> None:
    spec = RemoteRewardSpec.model_validate(
        {"url": judge, "authSecret": {"name": "judge-token", "key": "token"}, "maxRetries": 0, "batchSize": 2}
    )
    reward = RemoteReward("judge", spec, {"strict": True}, environ={"VLMR1_REWARD_AUTH_JUDGE": "s3cret"})
    try:
        completions = ["<answer>missing button</answer>", chat("<answer>none</answer>"), ""]
        scores = reward(completions, solution=[GT, NONE_GT, "x"], image_size=[[640, 480], None, None])
        assert scores == [pytest.approx(2 / 3), 1.0, None]
    finally:
        reward.close()
    wrong = RemoteReward("judge", spec, environ={"VLMR1_REWARD_AUTH_JUDGE": "wrong"})
    try:
        with pytest.raises(RemoteRewardError, match="HTTP 401"):
            wrong(["<answer>x</answer>"], solution=[GT])
    finally:
        wrong.close()
