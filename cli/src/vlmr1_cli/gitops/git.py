"""The few Git operations a promotion needs, through the ``git`` command.

The ``git`` binary rather than a library: it is what the user's hooks, signing settings,
credential helpers and remotes are configured for, and it is already on every machine that
has a clone. Every failure becomes a :class:`GitError` naming the command and git's message.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vlmr1_cli.gitops import PromoteError

__all__ = ["GitError", "Repo"]


class GitError(PromoteError):
    """A git command failed."""


@dataclass(frozen=True)
class Repo:
    """A Git work tree."""

    root: Path

    @classmethod
    def containing(cls, path: Path) -> Repo:
        """The work tree ``path`` lies in; an error saying so when it lies in none."""
        folder = path.parent if not path.is_dir() else path
        try:
            proc = subprocess.run(
                ["git", "rev-parse", "--show-toplevel"], cwd=folder, capture_output=True, text=True, check=False
            )
        except FileNotFoundError as exc:
            raise GitError("git is not installed (or not on PATH); install git to promote") from exc
        if proc.returncode != 0:
            raise GitError(
                f"{path} is not inside a Git work tree ({proc.stderr.strip()}); promote edits a manifest in a "
                "clone of the repository your GitOps tool deploys from"
            )
        return cls(Path(proc.stdout.strip()))

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``git ARGS`` in the work tree; a non-zero exit is a GitError when ``check``."""
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
        proc = subprocess.run(["git", *args], cwd=self.root, capture_output=True, text=True, env=env, check=False)
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip()
            raise GitError(f"git {' '.join(args)} failed (exit {proc.returncode}): {detail}")
        return proc

    def relative(self, path: Path) -> str:
        """``path`` relative to the work tree root, with forward slashes (as git names it)."""
        return path.resolve().relative_to(self.root.resolve()).as_posix()

    def tracked_changes(self) -> list[str]:
        """``git status`` lines of tracked files with staged or unstaged changes (untracked ignored)."""
        out = self.run("status", "--porcelain=v1", "--untracked-files=no").stdout
        return [line for line in out.splitlines() if line.strip()]

    def is_tracked(self, relpath: str) -> bool:
        """Whether the file is in the index."""
        return self.run("ls-files", "--error-unmatch", "--", relpath, check=False).returncode == 0

    def current_branch(self) -> str | None:
        """The checked-out branch, or None on a detached HEAD."""
        proc = self.run("symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None

    def head(self) -> str:
        """The commit HEAD points at."""
        return self.run("rev-parse", "--verify", "HEAD").stdout.strip()

    def branch_exists(self, name: str) -> bool:
        """Whether a local branch of that name exists."""
        return self.run("rev-parse", "--verify", "--quiet", f"refs/heads/{name}", check=False).returncode == 0

    def check_branch_name(self, name: str) -> None:
        """A GitError when ``name`` cannot be a branch name."""
        if self.run("check-ref-format", "--branch", name, check=False).returncode != 0:
            raise GitError(f"{name!r} is not a valid branch name; pass another with --branch")

    def show(self, rev: str, relpath: str) -> str | None:
        """The file's text at ``rev``, or None when it has no such file."""
        proc = self.run("show", f"{rev}:{relpath}", check=False)
        return proc.stdout if proc.returncode == 0 else None

    def short(self, rev: str) -> str:
        """The abbreviated commit id of ``rev``."""
        return self.run("rev-parse", "--short", rev).stdout.strip()

    def switch_new(self, name: str) -> None:
        """Create branch ``name`` at HEAD and check it out."""
        self.run("switch", "--quiet", "--create", name)

    def switch_back(self, branch: str | None, commit: str) -> None:
        """Check out ``branch`` again, or ``commit`` detached when there was no branch."""
        if branch is not None:
            self.run("switch", "--quiet", branch)
        else:
            self.run("switch", "--quiet", "--detach", commit)

    def delete_branch(self, name: str) -> None:
        """Delete a local branch, merged or not."""
        self.run("branch", "--quiet", "-D", name)

    def commit_file(self, relpath: str, message: str) -> str:
        """Stage and commit one file; returns the new commit id."""
        self.run("add", "--", relpath)
        self.run("commit", "--quiet", f"--message={message}", "--", relpath)
        return self.head()

    def push(self, remote: str, branch: str) -> None:
        """Push ``branch`` to ``remote`` and track it."""
        self.run("push", "--quiet", "--set-upstream", remote, f"refs/heads/{branch}:refs/heads/{branch}")
