"""Saved predictions to re-score: ``vlmr1 eval --predictions FILE.jsonl``.

One JSON object per line with a string ``prediction`` (the model's whole answer). Lines are
matched to the evaluation set's samples either in order (the n-th prediction is the n-th
sample of the data file) or, when every line has an ``id``, by the sample's ``id`` field, so a
file written by a distributed or shuffled run still lines up. A ``samples.jsonl`` that
``vlmr1 eval`` wrote is a valid predictions file (in order). Blank lines are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmr1_core.errors import UserError

__all__ = ["PredictionsError", "PredictionsFile", "align", "read_predictions", "sample_ids"]

_FIX = 'each line must be a JSON object like {"prediction": "<think>…</think><answer>…</answer>"} (optionally an "id")'


class PredictionsError(UserError, ValueError):
    """A predictions file that cannot be matched to its evaluation set."""


@dataclass(frozen=True)
class PredictionsFile:
    """A parsed predictions file: the texts, their ids (None when matched in order), the path."""

    path: Path
    predictions: list[str]
    ids: list[str] | None


def read_predictions(path: Path) -> PredictionsFile:
    """Parse ``path``; a bad line is an error naming ``file:line``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PredictionsError(f"cannot read the predictions file: {exc.strerror or exc}", file=str(path)) from exc
    predictions: list[str] = []
    ids: list[str | None] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise PredictionsError(f"not valid JSON ({exc})", file=where, fix=_FIX) from exc
        if not isinstance(record, dict):
            raise PredictionsError(f"a JSON {type(record).__name__}, not an object", file=where, fix=_FIX)
        prediction = record.get("prediction")
        if not isinstance(prediction, str):
            found = "no" if prediction is None else f"a {type(prediction).__name__}"
            raise PredictionsError(f'"prediction" must be a string; the line has {found} prediction', file=where,
                                   fix=_FIX)  # fmt: skip
        ident = record.get("id")
        if isinstance(ident, bool) or (ident is not None and not isinstance(ident, str | int)):
            raise PredictionsError(f'"id" must be a string or an integer, got {ident!r}', file=where, fix=_FIX)
        predictions.append(prediction)
        ids.append(None if ident is None else str(ident))
    if not predictions:
        raise PredictionsError("the predictions file has no predictions", file=str(path), fix=_FIX)
    with_id = sum(i is not None for i in ids)
    if 0 < with_id < len(ids):
        raise PredictionsError(
            f"{with_id} of {len(ids)} lines have an id",
            file=str(path),
            fix="give every line an id (matched by the data's id field) or none (matched in order)",
        )
    return PredictionsFile(path, predictions, [i for i in ids if i is not None] if with_id else None)


def align(file: PredictionsFile, sample_ids: Sequence[Any], data: str) -> list[str]:
    """The predictions in the order of the data file's samples (whose ids are ``sample_ids``,
    None where a sample has none); ``data`` names the data file in errors."""
    if file.ids is None:
        if len(file.predictions) != len(sample_ids):
            raise PredictionsError(
                f"{len(file.predictions)} predictions for {len(sample_ids)} samples in {data}",
                file=str(file.path),
                fix="write one prediction per data line, in order, or give each prediction the id of its sample",
            )
        return list(file.predictions)
    by_id: dict[str, str] = {}
    for ident, prediction in zip(file.ids, file.predictions, strict=True):
        if ident in by_id:
            raise PredictionsError(f"id {ident!r} occurs twice", file=str(file.path), fix="keep one line per id")
        by_id[ident] = prediction
    wanted = [None if i is None else str(i) for i in sample_ids]
    if any(i is None for i in wanted):
        missing = sum(i is None for i in wanted)
        raise PredictionsError(
            f"the predictions carry ids but {missing} sample(s) of {data} have no id field",
            file=str(file.path),
            fix="drop the ids from the predictions to match them in order",
        )
    if len(set(wanted)) != len(wanted):
        raise PredictionsError(f"{data} has duplicate ids, so predictions cannot be matched by id",
                               file=str(file.path), fix="match in order: drop the ids")  # fmt: skip
    absent = [i for i in wanted if i not in by_id]
    extra = sorted(set(by_id) - set(wanted))
    if absent or extra:
        parts = []
        if absent:
            parts.append(f"no prediction for {len(absent)} sample(s) (ids {', '.join(map(repr, absent[:5]))}…)")
        if extra:
            parts.append(f"{len(extra)} prediction(s) for ids not in {data} ({', '.join(map(repr, extra[:5]))}…)")
        raise PredictionsError(
            f"{len(file.predictions)} predictions for {len(wanted)} samples: " + "; ".join(parts),
            file=str(file.path),
            fix="predict every sample of the data file once",
        )
    return [by_id[i] for i in wanted if i is not None]


def sample_ids(rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The ``id`` column of the evaluation rows (None where a line has none)."""
    return [row.get("id") for row in rows]
