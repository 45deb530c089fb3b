"""``vlmr1 promote``: choose, verify and gate a checkpoint, then pin it in a VLMService with a Git commit.

The order is cheapest refusal first: the manifest must hold a VLMService and the work tree
must be clean before a single weight file is hashed. Nothing is written until every check has
passed, and a failure after the branch was created puts everything back (file, checkout,
branch), so the repository is either promoted or untouched.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vlmr1_cli.gitops import PromoteError
from vlmr1_cli.gitops.edit import EditResult, Pin, find_service, pin_model, write_atomically
from vlmr1_cli.gitops.evalresults import EvalResults, gate_metrics
from vlmr1_cli.gitops.git import GitError, Repo
from vlmr1_cli.gitops.select import Candidate, Gate, GateResult, Selection, check_gates, choose
from vlmr1_core.checkpoints import (
    CHECKPOINTS,
    MANIFEST,
    list_checkpoints,
    manifest_digest,
    step_of,
    verify_checkpoint,
)
from vlmr1_core.uri import StorageError, parse_uri, resolve_local_path

__all__ = ["JobReader", "Outcome", "Request", "Source", "Verified", "promote"]

JobReader = Callable[[str, str], Mapping[str, Any]]
"""``read_job(namespace, name)``: the GRPOJob object as the API returns it (a dict)."""

Say = Callable[[str], None]

_SCHEME = re.compile(r"^([a-z0-9]+)://(.*)$")
_BRANCH_UNSAFE = re.compile(r"[^A-Za-z0-9._/-]+")


@dataclass(frozen=True)
class Request:
    """Everything ``vlmr1 promote`` was asked to do."""

    service: Path
    service_name: str | None = None
    job: str | None = None
    namespace: str = "default"
    run_dir: Path | None = None
    selection: Selection = field(default_factory=lambda: Selection("best"))
    gates: Sequence[Gate] = ()
    uri_prefix: str | None = None
    pvc_root: Path = Path("/mnt/pvc")
    branch: str | None = None
    push: bool = False
    remote: str = "origin"
    dry_run: bool = False
    eval_results: Sequence[EvalResults] = ()
    """`vlmr1 eval` records of the promoted checkpoint, gated like its manifest's metrics."""


@dataclass(frozen=True)
class Source:
    """The checkpoints of a GRPOJob or a run folder, and how that source defines "best"."""

    label: str
    """For people and the commit: ``GRPOJob ns/name`` or ``run folder DIR``."""
    job: str
    """Short name for the commit subject and the branch."""
    candidates: list[Candidate]
    best_metric: str = "reward"
    greater_is_better: bool = True
    marked_best: int | None = None


@dataclass(frozen=True)
class Verified:
    """A checkpoint whose files match its manifest, and what that manifest says."""

    candidate: Candidate
    path: Path
    digest: str
    files: int
    metrics: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """What a promotion did."""

    status: Literal["promoted", "already-promoted", "dry-run"]
    pin: Pin
    branch: str | None = None
    commit: str | None = None
    message: str = ""
    diff: str = ""


def promote(request: Request, read_job: JobReader | None = None, say: Say = print) -> Outcome:
    """Run a promotion; every refusal is a PromoteError that says what to fix."""
    path = request.service
    text = _read_text(path)
    service = find_service(text, str(path), request.service_name)
    repo = None if request.dry_run else _clean_repo(path)
    source = _source(request, read_job)
    candidate = choose(
        source.candidates,
        request.selection,
        best_metric=source.best_metric,
        greater_is_better=source.greater_is_better,
        marked_best=source.marked_best,
        source=source.label,
    )
    say(f"{source.label}: {request.selection} is step {candidate.step} ({candidate.uri})")
    verified = verify(candidate, request.pvc_root)
    say(f"verified: {verified.files} files match the manifest, digest {verified.digest}")
    gates = check_gates(request.gates, gate_metrics(verified.metrics, verified.digest, request.eval_results))
    for gate in gates:
        say(f"gate passed: {gate}")
    pin = Pin(candidate.uri, verified.digest)
    edit = pin_model(text, str(path), pin, service.name)
    branch = request.branch or default_branch(service.name, source.job, candidate.step)
    message = commit_message(source, verified, edit, gates)
    if not edit.changed:
        return _already_pinned(request, repo, pin, branch, say)
    if request.dry_run:
        diff = "".join(
            difflib.unified_diff(
                text.splitlines(keepends=True), edit.text.splitlines(keepends=True), f"a/{path}", f"b/{path}"
            )
        )
        say(diff.rstrip("\n"))
        say(f"dry run: nothing changed; would commit on branch {branch}:\n\n{message}")
        return Outcome("dry-run", pin, branch, None, message, diff)
    assert repo is not None
    return _commit(request, repo, edit, pin, branch, message, say)


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise PromoteError(f"cannot read the VLMService manifest {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise PromoteError(f"{path} is not UTF-8 text; save it as UTF-8 first") from exc


def _clean_repo(path: Path) -> Repo:
    """The work tree of ``path``, which must track it and have no tracked changes."""
    repo = Repo.containing(path.resolve())
    if not repo.is_tracked(repo.relative(path)):
        raise PromoteError(
            f"{path} is not tracked by git; commit it first, so the promotion is a reviewable change to it"
        )
    changes = repo.tracked_changes()
    if changes:
        shown = "\n  ".join(changes[:10]) + ("\n  ..." if len(changes) > 10 else "")
        raise PromoteError(
            f"the work tree {repo.root} has uncommitted changes to tracked files; commit or stash them first, "
            f"so the promotion commit holds nothing else:\n  {shown}"
        )
    return repo


def _source(request: Request, read_job: JobReader | None) -> Source:
    if (request.job is None) == (request.run_dir is None):
        raise PromoteError("name the checkpoints' source: --job NAME (a GRPOJob on the cluster) or --run-dir DIR")
    if request.run_dir is not None:
        return run_dir_source(request.run_dir, request.uri_prefix)
    assert request.job is not None
    if request.uri_prefix is not None:
        raise PromoteError("--uri-prefix is for --run-dir; a GRPOJob's status already records each checkpoint's uri")
    if read_job is None:
        raise PromoteError("--job needs a cluster connection (no job reader was given)")
    return job_source(read_job(request.namespace, request.job), request.namespace, request.job)


def job_source(job: Mapping[str, Any], namespace: str, name: str) -> Source:
    """The checkpoints in a GRPOJob's status; ``best`` is the one its status marks."""
    label = f"GRPOJob {namespace}/{name}"
    status = job.get("status") or {}
    entries = status.get("checkpoints") or []
    if not entries:
        phase = status.get("phase", "Pending")
        raise PromoteError(
            f"{label} has no checkpoints yet (phase {phase}); wait for its first save (training.saveSteps) "
            "or promote from a run folder with --run-dir"
        )
    try:
        candidates = [
            Candidate(int(e["step"]), str(e["uri"]), str(e["digest"]), dict(e.get("metrics") or {})) for e in entries
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise PromoteError(f"{label} has a malformed status.checkpoints entry ({exc!r}); check the operator") from exc
    best = status.get("bestCheckpoint")
    marked = best.get("step") if isinstance(best, Mapping) else None
    spec = job.get("spec")
    raw = spec.get("checkpoint") if isinstance(spec, Mapping) else None
    settings: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    return Source(
        label,
        name,
        candidates,
        best_metric=str(settings.get("bestMetric", "reward")),
        greater_is_better=bool(settings.get("greaterIsBetter", True)),
        marked_best=marked if isinstance(marked, int) else None,
    )


def run_dir_source(run_dir: Path, uri_prefix: str | None) -> Source:
    """The checkpoints of a local run folder (``DIR/checkpoints/checkpoint-<step>``, or DIR itself)."""
    folder = run_dir / CHECKPOINTS if (run_dir / CHECKPOINTS).is_dir() else run_dir
    results = list_checkpoints(folder, verify=False)
    if not results:
        raise PromoteError(
            f"{run_dir} holds no checkpoints (expected {run_dir}/checkpoints/checkpoint-<step>/ folders, as "
            "`vlmr1 run` writes them)"
        )
    config = _newest_config([r.path for r in results if r.digest is not None])
    raw = config.get("checkpoint")
    settings: dict[str, Any] = raw if isinstance(raw, dict) else {}
    prefix = uri_prefix or _default_prefix(settings.get("uri"))
    if prefix is None:
        raise PromoteError(
            f"the checkpoints in {run_dir} record no pvc:// or s3:// checkpoint.uri, so the serving pods' path to "
            f"them is unknown; pass --uri-prefix PREFIX (the uri of {folder}, e.g. pvc://claim/run/checkpoints)"
        )
    absolute = run_dir.resolve()
    name = (absolute.parent.name if absolute.name == CHECKPOINTS else absolute.name) or "run"
    candidates = [
        Candidate(r.step, f"{prefix.rstrip('/')}/{r.path.name}", r.digest, dict(r.metrics), r.path)
        for r in results
        if r.step is not None
    ]
    candidates += [  # an unreadable manifest: kept so selecting it is refused by verification, not skipped
        Candidate(step, f"{prefix.rstrip('/')}/{r.path.name}", None, {}, r.path)
        for r in results
        if r.step is None and (step := step_of(r.path.name)) is not None
    ]
    return Source(
        f"run folder {run_dir}",
        name,
        candidates,
        best_metric=str(settings.get("bestMetric", "reward")),
        greater_is_better=bool(settings.get("greaterIsBetter", True)),
    )


def _newest_config(paths: Sequence[Path]) -> dict[str, Any]:
    for path in paths:  # newest first
        try:
            config = json.loads((path / MANIFEST).read_bytes()).get("config")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(config, dict):
            return config
    return {}


def _default_prefix(uri: Any) -> str | None:
    """The uri of the checkpoints folder: ``<checkpoint.uri>/checkpoints``, as the trainer lays a run
    out (checkpoint.uri names the run folder), when checkpoint.uri names shared storage."""
    if not isinstance(uri, str) or not _SCHEME.match(uri):
        return None
    return f"{uri.rstrip('/')}/{CHECKPOINTS}"


def local_path(uri: str, pvc_root: Path) -> Path:
    """Where the files of a checkpoint uri are on this machine (s3:// is downloaded)."""
    try:
        parsed = parse_uri(uri)
    except StorageError as exc:
        raise PromoteError(f"cannot verify {uri}: {exc}") from exc
    if parsed.scheme not in (None, "pvc", "s3"):
        raise PromoteError(f"cannot verify {uri}: promote verifies files on pvc://, s3:// or local paths only")
    try:
        return resolve_local_path(uri, mount_root=pvc_root)
    except StorageError as exc:
        raise PromoteError(
            f"cannot download {uri} to verify it: {exc}; install boto3 with credentials for the bucket, "
            "or promote from a run folder with --run-dir"
        ) from exc


def verify(candidate: Candidate, pvc_root: Path) -> Verified:
    """The candidate's files checked against its manifest, and the manifest against the claimed digest."""
    path = candidate.path or local_path(candidate.uri, pvc_root)
    if not path.is_dir():
        raise PromoteError(
            f"cannot verify {candidate.uri}: {path} is not a folder on this machine; mount the claim and pass "
            f"--pvc-root DIR (where claims are mounted, now {pvc_root}), or promote from the run folder with --run-dir"
        )
    result = verify_checkpoint(path)
    if not result.ok:
        problems = result.problems()
        shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
        raise PromoteError(
            f"checkpoint step {candidate.step} at {path} does not verify against its manifest ({shown}); "
            f"not promoting it (`vlmr1 checkpoints verify {path}` lists every problem)"
        )
    if result.step != candidate.step:
        raise PromoteError(f"{path} holds the manifest of step {result.step}, not step {candidate.step}")
    data = (path / MANIFEST).read_bytes()
    digest = manifest_digest(data)  # re-read: the manifest must still be the one that verified
    if digest != result.digest or (candidate.digest is not None and candidate.digest != digest):
        raise PromoteError(
            f"the status and the files disagree: the source records {candidate.digest} for step {candidate.step}, "
            f"but {path / MANIFEST} has digest {digest} (the checkpoint was rewritten, or the uri points at another "
            "one); not promoting"
        )
    manifest = json.loads(data)
    metrics = manifest.get("metrics") if isinstance(manifest.get("metrics"), dict) else {}
    return Verified(candidate, path, digest, len(manifest["files"]), metrics)


def default_branch(service: str, job: str, step: int) -> str:
    """``promote/<service>/<job>-step-<N>``, with characters git refuses replaced."""
    name = f"promote/{service}/{job}-step-{step}"
    return _BRANCH_UNSAFE.sub("-", name).replace("..", ".")


def commit_message(source: Source, verified: Verified, edit: EditResult, gates: Sequence[GateResult]) -> str:
    """Subject and body recording what was promoted and why it passed."""
    c = verified.candidate
    lines = [
        f"Promote {source.job} step {c.step} to VLMService {edit.service.ref}",
        "",
        f"Job: {source.label}",
        f"Step: {c.step}",
        f"URI: {c.uri}",
        f"Digest: {verified.digest}",
        f"Previous: {edit.service.describe_model()}",
        f"Verified: {verified.files} files match the checkpoint manifest",
    ]
    if gates:
        lines += ["Gates:", *(f"  {g}" for g in gates)]
    if verified.metrics:
        lines += ["Metrics:", *(f"  {k} = {json.dumps(v)}" for k, v in sorted(verified.metrics.items()))]
    return "\n".join(lines) + "\n"


def _already_pinned(request: Request, repo: Repo | None, pin: Pin, branch: str, say: Say) -> Outcome:
    say(f"already promoted: {request.service} pins {pin.digest}; nothing to commit")
    if request.push and repo is not None and repo.current_branch() == branch:
        repo.push(request.remote, branch)
        say(f"pushed {branch} to {request.remote}")
    return Outcome("already-promoted", pin, branch)


def _commit(request: Request, repo: Repo, edit: EditResult, pin: Pin, branch: str, message: str, say: Say) -> Outcome:
    path = request.service
    relpath = repo.relative(path)
    repo.check_branch_name(branch)
    if repo.branch_exists(branch):
        return _existing_branch(request, repo, relpath, pin, branch, say)
    original_branch, original_commit = repo.current_branch(), repo.head()
    original = path.read_bytes()
    repo.switch_new(branch)
    try:
        write_atomically(path, edit.text)
        commit = repo.commit_file(relpath, message)
        if request.push:
            repo.push(request.remote, branch)
    except BaseException as exc:
        _roll_back(repo, path, relpath, original, original_branch, original_commit, branch)
        if isinstance(exc, GitError):
            raise PromoteError(f"{exc}\nnothing was changed: {path} restored, branch {branch} removed") from exc
        raise
    say(f"committed {repo.short(commit)} on new branch {branch}: {relpath} now pins {pin.uri} ({pin.digest})")
    if request.push:
        say(f"pushed {branch} to {request.remote}; next: open a pull request from {branch}")
    else:
        say(f"next: git push -u {request.remote} {branch}, then open a pull request from {branch}")
    return Outcome("promoted", pin, branch, commit, message)


def _existing_branch(request: Request, repo: Repo, relpath: str, pin: Pin, branch: str, say: Say) -> Outcome:
    there = repo.show(branch, relpath)
    try:
        pinned = there is not None and find_service(there, relpath, request.service_name).pins(pin)
    except PromoteError:
        pinned = False
    if not pinned:
        raise PromoteError(
            f"branch {branch} already exists and does not pin {pin.digest} in {relpath}; pass another name with "
            f"--branch, or delete it (git branch -D {branch})"
        )
    say(f"already promoted on branch {branch} ({repo.short(branch)}): {relpath} pins {pin.digest}; nothing to commit")
    if request.push:
        repo.push(request.remote, branch)
        say(f"pushed {branch} to {request.remote}; next: open a pull request from {branch}")
    return Outcome("already-promoted", pin, branch, repo.run("rev-parse", branch).stdout.strip())


def _roll_back(
    repo: Repo,
    path: Path,
    relpath: str,
    original: bytes,
    branch: str | None,
    commit: str,
    new_branch: str,
) -> None:
    """Put the file, the index, the checkout and the branches back as they were (the tree was clean)."""
    steps: list[tuple[str, Callable[[], object]]] = [
        ("reset the new branch", lambda: repo.run("reset", "--quiet", "--hard", commit)),
        ("restore the file", lambda: path.read_bytes() == original or path.write_bytes(original)),
        ("switch back", lambda: repo.switch_back(branch, commit)),
        ("delete the new branch", lambda: repo.delete_branch(new_branch)),
    ]
    failed = []
    for what, step in steps:
        try:
            step()
        except (OSError, PromoteError) as exc:
            failed.append(f"{what}: {exc}")
    if failed:
        raise PromoteError(
            f"the promotion failed and could not be fully undone ({'; '.join(failed)}); check {path} and "
            f"`git switch {branch or commit}`, `git branch -D {new_branch}` by hand"
        )
