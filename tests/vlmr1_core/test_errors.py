"""UserError: what every entry point prints instead of a traceback."""

from __future__ import annotations

import doctest
import importlib
import io
from pathlib import Path

import pytest

from vlmr1_core.api.manifest import ManifestError, Problem, line_of_field
from vlmr1_core.errors import EXIT_USER_ERROR, UserError, report
from vlmr1_core.uri import StorageError


@pytest.mark.parametrize("name", ["vlmr1_core.errors", "vlmr1_core.config", "vlmr1_core.api.manifest"])
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0


def test_at_fills_in_only_what_is_missing() -> None:
    exc = UserError("no such file", field="spec.datasets[0].jsonl")
    assert exc.at(file="job.yaml", line=9, field="spec.other", fix="correct it") is exc
    assert str(exc) == "job.yaml:9: spec.datasets[0].jsonl: no such file; to fix: correct it"
    exc.at(file="other.yaml", line=1, fix="something else")
    assert (exc.file, exc.line, exc.fix) == ("job.yaml", 9, "correct it")


def test_report_prefixes_the_program_unless_a_file_leads() -> None:
    stream = io.StringIO()
    assert report(UserError("gone", fix="put it back."), "vlmr1 run", stream) == EXIT_USER_ERROR == 2
    assert report(UserError("bad line.", file="d.jsonl", line=4), "vlmr1 run", stream) == 2
    assert stream.getvalue() == "vlmr1 run: gone; to fix: put it back.\nd.jsonl:4: bad line.\n"


def test_the_contract_errors_are_user_errors() -> None:
    problems = [Problem("a.yaml", 3, "spec.x", "bad"), Problem("a.yaml", 5, "spec.y", "worse")]
    manifest = ManifestError(problems)
    assert isinstance(manifest, UserError) and isinstance(manifest, ValueError)
    assert manifest.render("vlmr1 validate") == "a.yaml:3: spec.x: bad\na.yaml:5: spec.y: worse"
    storage = StorageError("s3://b/k: gone")
    assert isinstance(storage, UserError) and isinstance(storage, RuntimeError)


def test_line_of_field(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("spec:\n  datasets:\n    - jsonl: a\n    - jsonl: b\n      imageRoot: c\n")
    assert line_of_field(path, "spec.datasets[1].imageRoot") == 5
    assert line_of_field(path, "spec.datasets[1].missing") == 4  # the deepest part that is there
    assert line_of_field(path.with_name("none.yaml"), "spec") is None
