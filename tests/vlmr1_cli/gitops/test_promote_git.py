"""``vlmr1 promote`` against real git repositories and real checkpoint folders (no cluster)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from vlmr1_cli import main
from vlmr1_cli.gitops import PromoteError
from vlmr1_cli.gitops.promote import Outcome, Request, promote
from vlmr1_cli.gitops.select import parse_gate, parse_selection
from vlmr1_core.checkpoints import CheckpointInfo

EVAL = "eval/refcoco-val/rec_acc"
PREFIX = "pvc://vlmr1-checkpoints/rec/checkpoints"
BRANCH = "promote/rec-dev/rec-step-4"

Git = Callable[..., str]
MakeRun = Callable[..., dict[int, CheckpointInfo]]


def run_request(service: Path, run_dir: Path, *gates: str, select: str = "best", **kwargs: Any) -> Request:
    return Request(
        service=service,
        run_dir=run_dir,
        selection=parse_selection(select),
        gates=[parse_gate(g) for g in gates],
        **kwargs,
    )


def do(request: Request, read_job: Callable[[str, str], Mapping[str, Any]] | None = None) -> tuple[Outcome, str]:
    said: list[str] = []
    outcome = promote(request, read_job, said.append)
    return outcome, "\n".join(said)


@pytest.fixture
def setup(
    make_repo: Callable[..., Path], make_run: MakeRun, run_metrics: dict[int, dict[str, Any]], tmp_path: Path
) -> tuple[Path, Path, dict[int, CheckpointInfo]]:
    """(service file, run folder, checkpoints) for the common case."""
    service = make_repo()
    infos = make_run(run_metrics)
    return service, tmp_path / "runs" / "rec", infos


def unchanged(git: Git, service: Path, before: str) -> None:
    """The refusal left the repository as it was: on main, same file, no promote branch."""
    root = service.parents[1]
    assert git(root, "branch", "--show-current").strip() == "main"
    assert service.read_text() == before
    assert git(root, "branch", "--list", "promote/*") == ""
    assert git(root, "status", "--porcelain", "--untracked-files=no") == ""


def test_promotes_the_best_checkpoint_on_a_new_branch(setup: Any, git: Git) -> None:
    service, run_dir, infos = setup
    root = service.parents[1]
    outcome, said = do(run_request(service, run_dir, "rec_acc>=0.85", "reward > 0.5"))
    assert outcome.status == "promoted" and outcome.branch == BRANCH
    assert outcome.pin.uri == f"{PREFIX}/checkpoint-4" and outcome.pin.digest == infos[4].digest
    assert git(root, "branch", "--show-current").strip() == BRANCH
    assert git(root, "rev-list", "--count", f"main..{BRANCH}").strip() == "1"
    assert git(root, "status", "--porcelain") == ""
    diff = git(root, "diff", "--unified=0", "main", BRANCH)
    changed = [line for line in diff.splitlines() if re.match(r"^[-+](?![-+]{2} )", line)]
    assert changed == [
        "-    uri: pvc://vlmr1-checkpoints/old/checkpoint-1   # the served checkpoint",
        "-    digest: sha256:7bfeb668af2219300e9f1cb7c24bea23e9eed2022b5147aeb6bf775c95197b5c",
        f"+    uri: {PREFIX}/checkpoint-4   # the served checkpoint",
        f"+    digest: {infos[4].digest}",
    ]
    message = git(root, "log", "-1", "--format=%B", BRANCH)
    assert message.startswith("Promote rec step 4 to VLMService ml/rec-dev\n\n")
    for field in (
        f"Job: run folder {run_dir}",
        "Step: 4",
        f"URI: {PREFIX}/checkpoint-4",
        f"Digest: {infos[4].digest}",
        "Previous: pvc://vlmr1-checkpoints/old/checkpoint-1 (sha256:7bfeb668",
        "Verified: 2 files match the checkpoint manifest",
        f"  rec_acc ({EVAL}) = 0.91, required >= 0.85",
        "  reward = 0.7, required > 0.5",
        f"  {EVAL} = 0.91",
        "  eval/refcoco-val/samples = 100",
        "  loss = 0.2",
    ):
        assert field in message, field
    assert f"next: git push -u origin {BRANCH}" in said


def test_the_cli_promotes_and_refuses(setup: Any, git: Git, capsys: pytest.CaptureFixture[str]) -> None:
    service, run_dir, _ = setup
    args = ["promote", "--run-dir", str(run_dir), "--service", str(service), "--select", "step=2"]
    assert main([*args, "--require", "rec_acc >= 0.85"]) == 2  # refused: a user error
    assert f"vlmr1 promote: the checkpoint misses its gates: rec_acc ({EVAL}) is 0.62, required >= 0.85" in (
        capsys.readouterr().err
    )
    assert main(args) == 0
    assert "committed" in capsys.readouterr().out
    assert git(service.parents[1], "branch", "--show-current").strip() == "promote/rec-dev/rec-step-2"


def test_refuses_a_dirty_tree_but_ignores_untracked_files(setup: Any, git: Git) -> None:
    service, run_dir, _ = setup
    root = service.parents[1]
    before = service.read_text()
    (root / "README.md").write_text("edited\n")
    with pytest.raises(PromoteError, match=r"uncommitted changes to tracked files.*\n +M README.md"):
        do(run_request(service, run_dir))
    git(root, "checkout", "--", "README.md")
    unchanged(git, service, before)
    (root / "notes.txt").write_text("untracked\n")
    assert do(run_request(service, run_dir))[0].status == "promoted"
    assert "notes.txt" not in git(root, "show", "--name-only", "--format=", "HEAD")


def test_refuses_an_untracked_manifest(setup: Any) -> None:
    service, run_dir, _ = setup
    other = service.with_name("new.yaml")
    other.write_text(service.read_text())
    with pytest.raises(PromoteError, match=r"new\.yaml is not tracked by git; commit it first"):
        do(run_request(other, run_dir))


def test_refuses_a_manifest_outside_git(setup: Any, tmp_path: Path) -> None:
    service, run_dir, _ = setup
    loose = tmp_path / "loose.yaml"
    loose.write_text(service.read_text())
    with pytest.raises(PromoteError, match="is not inside a Git work tree"):
        do(run_request(loose, run_dir))


def test_refuses_a_checkpoint_that_does_not_verify(setup: Any, git: Git) -> None:
    service, run_dir, infos = setup
    before = service.read_text()
    (infos[4].path / "model.safetensors").write_bytes(b"tampered")
    with pytest.raises(PromoteError, match=r"checkpoint step 4 at .* does not verify .*changed: model.safetensors"):
        do(run_request(service, run_dir))
    unchanged(git, service, before)


def test_a_checkpoint_with_an_unreadable_manifest_is_refused_not_skipped(setup: Any, git: Git) -> None:
    # Kept as a candidate (step from its folder name) so that asking for it names the problem,
    # rather than "no checkpoint 6" or a silent fall back to another step.
    service, run_dir, infos = setup
    before = service.read_text()
    (infos[6].path / "manifest.json").write_text("not json")
    with pytest.raises(PromoteError, match=r"checkpoint step 6 at .* does not verify"):
        do(run_request(service, run_dir, select="step=6"))
    unchanged(git, service, before)


def test_refuses_a_gate_miss_with_the_measured_value(setup: Any, git: Git) -> None:
    service, run_dir, _ = setup
    before = service.read_text()
    with pytest.raises(PromoteError, match=re.escape(f"rec_acc ({EVAL}) is 0.62, required >= 0.85")):
        do(run_request(service, run_dir, "rec_acc>=0.85", select="step=2"))
    unchanged(git, service, before)


def test_refuses_a_file_that_is_not_a_vlmservice(
    make_repo: Callable[..., Path], make_run: MakeRun, tmp_path: Path
) -> None:
    job = make_repo("apiVersion: vlmr1.io/v1alpha1\nkind: GRPOJob\nmetadata:\n  name: rec\n", name="job.yaml")
    make_run({2: {"reward": 0.1}})
    with pytest.raises(PromoteError, match=r"job.yaml holds no VLMService of vlmr1.io/\* \(found kinds: GRPOJob\)"):
        do(run_request(job, tmp_path / "runs" / "rec"))
    assert job.read_text().startswith("apiVersion: vlmr1.io/v1alpha1\nkind: GRPOJob")


def test_refuses_unknown_and_ambiguous_metrics(
    make_repo: Callable[..., Path], make_run: MakeRun, tmp_path: Path
) -> None:
    service = make_repo()
    make_run({4: {"reward": 0.7, EVAL: 0.9, "eval/refcoco-testA/rec_acc": 0.8}})
    run_dir = tmp_path / "runs" / "rec"
    with pytest.raises(PromoteError, match=r"no metric 'gui_acc' \(its metrics: eval/refcoco-testA/rec_acc, "):
        do(run_request(service, run_dir, "gui_acc>=0.5"))
    with pytest.raises(PromoteError, match=r"'rec_acc' is ambiguous: it matches eval/refcoco-testA/rec_acc, "):
        do(run_request(service, run_dir, "rec_acc>=0.5"))
    assert do(run_request(service, run_dir, f"{EVAL}>=0.85"))[0].status == "promoted"


def test_refuses_a_run_folder_without_checkpoints(make_repo: Callable[..., Path], tmp_path: Path) -> None:
    service = make_repo()
    (tmp_path / "empty").mkdir()
    with pytest.raises(PromoteError, match="holds no checkpoints"):
        do(run_request(service, tmp_path / "empty"))


def test_best_follows_the_recorded_best_metric(
    make_repo: Callable[..., Path],
    make_run: MakeRun,
    run_metrics: dict[int, dict[str, Any]],
    tmp_path: Path,
    config_of: Any,
) -> None:
    service = make_repo()
    make_run(run_metrics, config=config_of("loss", False))
    outcome, said = do(run_request(service, tmp_path / "runs" / "rec"))
    assert outcome.branch == "promote/rec-dev/rec-step-6"
    assert "best is step 6" in said


def test_a_run_without_a_shared_uri_needs_a_prefix(
    make_repo: Callable[..., Path], make_run: MakeRun, tmp_path: Path
) -> None:
    service = make_repo()
    make_run({2: {"reward": 0.1}}, config={"checkpoint": {"uri": "/data/run"}})
    run_dir = tmp_path / "runs" / "rec"
    with pytest.raises(PromoteError, match="pass --uri-prefix PREFIX"):
        do(run_request(service, run_dir))
    outcome, _ = do(run_request(service, run_dir, uri_prefix="s3://bucket/run/checkpoints/"))
    assert outcome.pin.uri == "s3://bucket/run/checkpoints/checkpoint-2"


def test_promoting_twice_makes_one_commit(setup: Any, git: Git) -> None:
    service, run_dir, infos = setup
    root = service.parents[1]
    do(run_request(service, run_dir))
    head = git(root, "rev-parse", "HEAD")
    outcome, said = do(run_request(service, run_dir))
    assert outcome.status == "already-promoted"
    assert f"already promoted: {service} pins {infos[4].digest}" in said
    assert git(root, "rev-parse", "HEAD") == head
    # From main again: the target branch already carries it.
    git(root, "switch", "--quiet", "main")
    outcome, said = do(run_request(service, run_dir))
    assert outcome.status == "already-promoted" and f"already promoted on branch {BRANCH}" in said
    assert git(root, "rev-parse", BRANCH) == head
    assert git(root, "branch", "--show-current").strip() == "main"
    assert git(root, "rev-list", "--count", f"main..{BRANCH}").strip() == "1"


def test_refuses_an_existing_branch_that_holds_something_else(setup: Any, git: Git) -> None:
    service, run_dir, _ = setup
    root = service.parents[1]
    git(root, "branch", BRANCH)
    with pytest.raises(
        PromoteError, match=f"branch {BRANCH} already exists and does not pin .*pass another name with --branch"
    ):
        do(run_request(service, run_dir))
    outcome, _ = do(run_request(service, run_dir, branch="promote/rec-dev/second-try"))
    assert outcome.status == "promoted" and outcome.branch == "promote/rec-dev/second-try"


def test_push_to_a_bare_remote(setup: Any, git: Git, tmp_path: Path) -> None:
    service, run_dir, _ = setup
    root = service.parents[1]
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "--quiet", "--bare", "-b", "main", str(remote))
    git(root, "remote", "add", "origin", str(remote))
    git(root, "push", "--quiet", "origin", "main")
    _, said = do(run_request(service, run_dir, push=True))
    assert git(remote, "rev-parse", BRANCH) == git(root, "rev-parse", "HEAD")
    assert git(root, "rev-parse", "--abbrev-ref", f"{BRANCH}@{{upstream}}").strip() == f"origin/{BRANCH}"
    assert f"next: open a pull request from {BRANCH}" in said


def test_a_failed_push_undoes_everything(setup: Any, git: Git) -> None:
    service, run_dir, _ = setup
    before = service.read_text()
    with pytest.raises(
        PromoteError, match=r"(?s)git push .* failed.*nothing was changed: .* restored, branch .* removed"
    ):
        do(run_request(service, run_dir, push=True, remote="nowhere"))
    unchanged(git, service, before)


def test_a_failing_commit_hook_undoes_everything(setup: Any, git: Git) -> None:
    service, run_dir, _ = setup
    root = service.parents[1]
    before = service.read_text()
    hook = root / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'hook says no' >&2\nexit 1\n")
    hook.chmod(0o755)
    with pytest.raises(PromoteError, match="hook says no"):
        do(run_request(service, run_dir))
    unchanged(git, service, before)


def test_from_a_detached_head_a_failure_returns_to_it(setup: Any, git: Git) -> None:
    service, run_dir, _ = setup
    root = service.parents[1]
    head = git(root, "rev-parse", "HEAD")
    git(root, "switch", "--quiet", "--detach", "HEAD")
    with pytest.raises(PromoteError):
        do(run_request(service, run_dir, push=True, remote="nowhere"))
    assert git(root, "rev-parse", "HEAD") == head
    assert git(root, "branch", "--show-current").strip() == ""
    assert git(root, "branch", "--list", "promote/*") == ""


def test_dry_run_changes_nothing(setup: Any, git: Git) -> None:
    service, run_dir, infos = setup
    root = service.parents[1]
    (root / "README.md").write_text("work in progress\n")  # a dry run does not need a clean tree
    before = service.read_text()
    outcome, said = do(run_request(service, run_dir, "rec_acc>=0.85", dry_run=True))
    assert outcome.status == "dry-run" and outcome.commit is None
    assert f"+    digest: {infos[4].digest}" in outcome.diff
    assert f"would commit on branch {BRANCH}" in said and "Step: 4" in said
    assert service.read_text() == before
    assert git(root, "branch", "--list", "promote/*") == ""


def test_a_from_job_service_is_pinned(
    make_repo: Callable[..., Path], make_run: MakeRun, tmp_path: Path, git: Git
) -> None:
    text = (
        "apiVersion: vlmr1.io/v1alpha1\nkind: VLMService\nmetadata:\n  name: rec-dev\nspec:\n  model:\n"
        "    fromJob: {name: rec, checkpoint: best}  # follow the job\n  resources:\n    accelerator: nvidia\n"
    )
    service = make_repo(text, crlf=True)
    infos = make_run({2: {"reward": 0.2}})
    do(run_request(service, tmp_path / "runs" / "rec"))
    assert (
        service.read_bytes()
        == text.replace(
            "    fromJob: {name: rec, checkpoint: best}  # follow the job\n",
            f"    uri: {PREFIX}/checkpoint-2\n    digest: {infos[2].digest}\n",
        )
        .replace("\n", "\r\n")
        .encode()
    )
    assert "Previous: fromJob rec (best)" in git(service.parents[1], "log", "-1", "--format=%B")


# Cluster mode, with an injected reader instead of a cluster.


def job_object(infos: dict[int, CheckpointInfo], best: int | None = 4, phase: str = "Running") -> dict[str, Any]:
    checkpoints = [
        {"uri": f"{PREFIX}/checkpoint-{s}", "step": s, "digest": i.digest, "metrics": i.metrics, "best": s == best}
        for s, i in sorted(infos.items())
    ]
    status: dict[str, Any] = {"phase": phase, "checkpoints": checkpoints}
    if best is not None:
        status["bestCheckpoint"] = next(c for c in checkpoints if c["step"] == best)
    return {"apiVersion": "vlmr1.io/v1alpha1", "kind": "GRPOJob", "metadata": {"name": "rec-job"}, "status": status}


@pytest.fixture
def cluster_setup(
    make_repo: Callable[..., Path], make_run: MakeRun, run_metrics: dict[int, dict[str, Any]], tmp_path: Path
) -> tuple[Path, Path, dict[int, CheckpointInfo]]:
    """(service, pvc root with the claim's files, checkpoints)."""
    pvc = tmp_path / "pvc"
    infos = make_run(run_metrics, root=pvc / "vlmr1-checkpoints" / "rec")
    return make_repo(), pvc, infos


def job_request(service: Path, pvc: Path, select: str = "best", *gates: str, **kwargs: Any) -> Request:
    return Request(
        service=service,
        job="rec-job",
        namespace="ml",
        selection=parse_selection(select),
        gates=[parse_gate(g) for g in gates],
        pvc_root=pvc,
        **kwargs,
    )


def test_cluster_job_best_is_the_status_best(cluster_setup: Any, git: Git) -> None:
    service, pvc, infos = cluster_setup
    asked: list[tuple[str, str]] = []

    def read_job(namespace: str, name: str) -> Mapping[str, Any]:
        asked.append((namespace, name))
        return job_object(infos, best=2)

    outcome, _ = do(job_request(service, pvc, "best", "reward>=0.4"), read_job)
    assert asked == [("ml", "rec-job")]
    assert outcome.branch == "promote/rec-dev/rec-job-step-2"
    assert outcome.pin.digest == infos[2].digest
    message = git(service.parents[1], "log", "-1", "--format=%B")
    assert message.startswith("Promote rec-job step 2 to VLMService ml/rec-dev")
    assert "Job: GRPOJob ml/rec-job" in message


def test_cluster_gates_use_the_verified_manifest_not_the_status(cluster_setup: Any) -> None:
    service, pvc, infos = cluster_setup
    job = job_object(infos)
    job["status"]["checkpoints"][0]["metrics"] = {EVAL: 0.99}  # stale or wrong status metrics for step 2
    with pytest.raises(PromoteError, match=re.escape(f"rec_acc ({EVAL}) is 0.62")):
        do(job_request(service, pvc, "step=2", "rec_acc>=0.85"), lambda ns, n: job)


def test_cluster_status_and_files_must_agree(cluster_setup: Any, git: Git) -> None:
    service, pvc, infos = cluster_setup
    before = service.read_text()
    job = job_object(infos)
    job["status"]["bestCheckpoint"]["digest"] = "sha256:" + "0" * 64
    job["status"]["checkpoints"][1]["digest"] = "sha256:" + "0" * 64
    with pytest.raises(PromoteError, match="the status and the files disagree"):
        do(job_request(service, pvc), lambda ns, n: job)
    unchanged(git, service, before)


def test_cluster_files_out_of_reach_say_how_to_reach_them(cluster_setup: Any, tmp_path: Path) -> None:
    service, _, infos = cluster_setup
    with pytest.raises(PromoteError, match=r"is not a folder on this machine; mount the claim and pass --pvc-root"):
        do(job_request(service, tmp_path / "elsewhere"), lambda ns, n: job_object(infos))


def test_cluster_job_without_checkpoints_is_refused_with_its_phase(cluster_setup: Any) -> None:
    service, pvc, _ = cluster_setup
    job = {"metadata": {"name": "rec-job"}, "status": {"phase": "Running", "checkpoints": []}}
    with pytest.raises(PromoteError, match=r"GRPOJob ml/rec-job has no checkpoints yet \(phase Running\)"):
        do(job_request(service, pvc), lambda ns, n: job)


def test_cluster_latest_and_step(cluster_setup: Any) -> None:
    service, pvc, infos = cluster_setup
    outcome, _ = do(job_request(service, pvc, "latest", dry_run=True), lambda ns, n: job_object(infos))
    assert outcome.pin.uri == f"{PREFIX}/checkpoint-6"
    with pytest.raises(PromoteError, match=r"no checkpoint at step 5 \(steps: 2, 4, 6\)"):
        do(job_request(service, pvc, "step=5"), lambda ns, n: job_object(infos))
