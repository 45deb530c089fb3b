"""Errors the user can fix, and how every entry point reports them.

A :class:`UserError` is an expected failure: a bad spec, a missing or unreadable file, a bad
sample, an unknown reward, a hub or bucket that cannot be reached, a checkpoint whose digest
does not match. It carries where the problem is (file, line, spec field) and how to fix it,
and an entry point (``vlmr1``, ``python -m vlmr1_trainer``) prints it as one line, without a
traceback, and exits with :data:`EXIT_USER_ERROR`. Any other exception is a bug and keeps its
traceback. The specific errors of each package (``ManifestError``, ``StorageError``,
``BadSampleError``, ``PolicyError``, ``PromoteError``, ...) derive from it, so code that raises
them needs no change to be reported this way, and code that catches them keeps working.

Standard library only: the operator, trainer and serving images all import it.
"""

from __future__ import annotations

import os
import traceback
from typing import Self, TextIO

__all__ = ["EXIT_USER_ERROR", "UserError", "report"]

EXIT_USER_ERROR = 2
"""Exit status of a command stopped by a :class:`UserError` (argparse's usage errors use it too)."""


class UserError(Exception):
    """A failure the user can fix, with where it is and how.

    ``str()`` is one line, ``file:line: field: message; to fix: fix`` with the parts that are
    known:

    >>> str(UserError("dataset file d.jsonl does not exist", file="job.yaml", line=7,
    ...               field="spec.datasets[0].jsonl", fix="correct the path"))
    'job.yaml:7: spec.datasets[0].jsonl: dataset file d.jsonl does not exist; to fix: correct the path'
    >>> str(UserError("unknown reward 'x'", field="spec.rewards[0].name"))
    "spec.rewards[0].name: unknown reward 'x'"
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | os.PathLike[str] | None = None,
        line: int | None = None,
        field: str | None = None,
        fix: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = os.fspath(file) if file is not None else None
        self.line = line
        self.field = field
        self.fix = fix

    def at(
        self,
        *,
        file: str | os.PathLike[str] | None = None,
        line: int | None = None,
        field: str | None = None,
        fix: str | None = None,
    ) -> Self:
        """Fill in what the raiser could not know (the manifest a spec field came from, the fix
        that fits the caller); what is already set stays. Returns the error, to re-raise."""
        if self.file is None and file is not None:
            self.file, self.line = os.fspath(file), line if self.line is None else self.line
        if self.field is None:
            self.field = field
        if self.fix is None:
            self.fix = fix
        return self

    def __str__(self) -> str:
        parts = []
        if self.file is not None:
            parts.append(f"{self.file}:{self.line}" if self.line else self.file)
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        text = ": ".join(parts)
        # Library messages often end in a full stop; "...files.; to fix:" reads badly.
        return f"{text.removesuffix('.')}; to fix: {self.fix}" if self.fix else text

    def render(self, program: str) -> str:
        """The text an entry point prints: prefixed with ``program`` unless it starts with a file."""
        return str(self) if self.file is not None else f"{program}: {self}"


def report(exc: UserError, program: str, stream: TextIO, *, debug: bool = False) -> int:
    """Print a user error for ``program`` (with its traceback when ``debug``); the exit status."""
    if debug:
        traceback.print_exception(exc, file=stream)
    stream.write(exc.render(program) + "\n")
    stream.flush()
    return EXIT_USER_ERROR
