"""Bad manifests get one error per problem, naming file, line and field, with how to fix it."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlmr1_core.api.manifest import ManifestError, load_manifest, load_manifests

BAD = sorted((Path(__file__).parent / "bad_manifests").glob("*.yaml"))


def expected_field(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect-field: "), f"{path.name} must start with '# expect-field: <field>'"
    return first.removeprefix("# expect-field: ").strip()


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_manifest_names_the_field(path: Path) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifests(path)
    fields = [p.field for p in info.value.problems]
    assert expected_field(path) in fields, str(info.value)
    for problem in info.value.problems:
        assert problem.path == str(path)
        assert problem.line is not None and problem.line >= 1
        assert str(problem).startswith(f"{path}:{problem.line}: ")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


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


def test_error_points_at_the_line_of_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, JOB + "  grpo:\n    beta: 0.1\n    numGenerations: 1\n")
    with pytest.raises(ManifestError) as info:
        load_manifests(path)
    (problem,) = info.value.problems
    assert (problem.line, problem.field) == (12, "spec.grpo.numGenerations")
    assert "greater than or equal to 2" in problem.message
    assert "(got 1)" in problem.message


def test_typo_gets_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, JOB + "  grpo:\n    numGenerationz: 4\n")
    with pytest.raises(ManifestError) as info:
        load_manifests(path)
    (problem,) = info.value.problems
    assert problem.field == "spec.grpo.numGenerationz"
    assert problem.line == 11
    assert "did you mean 'numGenerations'?" in problem.message


def test_typo_inside_a_list_item_gets_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, JOB + "      imageRooot: imgs\n")
    with pytest.raises(ManifestError) as info:
        load_manifests(path)
    (problem,) = info.value.problems
    assert problem.field == "spec.datasets[0].imageRooot"
    assert "did you mean 'imageRoot'?" in problem.message


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    path = write(tmp_path, JOB + "  task: nope\n  grpo:\n    beta: -1\n")
    with pytest.raises(ManifestError) as info:
        load_manifests(path)
    assert {p.field for p in info.value.problems} == {"spec.task", "spec.grpo.beta"}


def test_duplicate_keys_are_an_error_not_silently_overwritten(tmp_path: Path) -> None:
    path = write(tmp_path, JOB + "  task: rec\n  task: ovd\n")
    with pytest.raises(ManifestError, match=r"job.yaml:11: spec.task: duplicate key"):
        load_manifests(path)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, JOB + "  grpo: [unclosed\n")
    with pytest.raises(ManifestError, match=r"job.yaml:\d+: invalid YAML"):
        load_manifests(path)


def test_wrong_kind_and_api_version(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="kind: expected one of GRPOJob, VLMService, got 'Pod'"):
        load_manifests(write(tmp_path, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"))
    with pytest.raises(ManifestError, match=r"apiVersion: expected vlmr1\.io/v1alpha1"):
        load_manifests(write(tmp_path, JOB.replace("vlmr1.io/v1alpha1", "vlmr1.io/v1")))


def test_missing_file_is_a_manifest_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read"):
        load_manifests(tmp_path / "nope.yaml")


def test_multi_document_file_and_kind_filter(tmp_path: Path) -> None:
    svc = JOB.replace("GRPOJob", "VLMService")
    path = write(tmp_path, JOB + "---\n" + svc)
    with pytest.raises(ManifestError):  # the second document is a VLMService with a job's spec
        load_manifests(path)
    path = write(tmp_path, JOB + "---\n")
    assert load_manifest(path).kind == "GRPOJob"


def test_an_unknown_reward_names_its_line_with_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, JOB + "  rewards:\n    - name: format\n    - name: rec_iuo\n      weight: 2\n")
    with pytest.raises(ManifestError) as info:
        load_manifests(path)
    (problem,) = info.value.problems
    assert (problem.line, problem.field) == (12, "spec.rewards[1].name")
    assert problem.message.startswith("unknown reward 'rec_iuo'; did you mean 'rec_iou'? (known rewards: accuracy, ")


def test_reward_names_are_checked_against_what_the_caller_knows(tmp_path: Path) -> None:
    """The trainer passes its registry (a custom image's rewards included); None skips the check."""
    path = write(tmp_path, JOB + "  rewards:\n    - name: my_reward\n")
    with pytest.raises(ManifestError, match="unknown reward 'my_reward'"):
        load_manifest(path)
    assert load_manifest(path, known_rewards={"my_reward"}).kind == "GRPOJob"
    assert load_manifest(path, known_rewards=None).kind == "GRPOJob"


@pytest.mark.parametrize(
    ("reward", "unknown"),
    [
        ("name: format", None),
        ("name: my_reward", "spec.rewards[0].name"),
        # A reference is checked by importing it (the trainer; `vlmr1 validate` when it can), not by name.
        ("name: my_rewards:exact", None),
        ("name: my_pkg.scoring:Judge.score", None),
        # A remote reward's name is a label, whatever it says.
        ("{name: judge, remote: {url: 'http://judge:8000/score'}}", None),
        ("{name: format, remote: {url: 'http://judge:8000/score'}}", None),
    ],
)
def test_only_built_in_reward_names_are_checked_by_name(tmp_path: Path, reward: str, unknown: str | None) -> None:
    path = write(tmp_path, JOB + f"  rewards:\n    - {reward}\n")
    if unknown is None:
        assert load_manifest(path).kind == "GRPOJob"
        return
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert [p.field for p in info.value.problems] == [unknown]


def test_an_unknown_reward_and_a_bad_field_are_both_reported_by_validate(tmp_path: Path) -> None:
    # Field errors come first (the job cannot be built); the reward check needs a valid job.
    path = write(tmp_path, JOB + "  rewards:\n    - name: nope\n  grpo:\n    numGenerations: 1\n")
    with pytest.raises(ManifestError) as info:
        load_manifests(path)
    assert [p.field for p in info.value.problems] == ["spec.grpo.numGenerations"]
