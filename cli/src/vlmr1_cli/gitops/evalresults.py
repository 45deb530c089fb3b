"""Gates measured outside training: ``vlmr1 promote --eval-results`` reads ``vlmr1 eval`` results.

A checkpoint's manifest holds the metrics its GRPOJob measured while training. A checkpoint
can also be measured afterwards with ``vlmr1 eval`` — in-process, through a serving endpoint,
or from saved predictions — which writes ``metrics.json`` recording the digest of the
checkpoint it evaluated (``--checkpoint``) and how the predictions were produced
(``source.kind``: model, endpoint, predictions). Such a file counts for the gates only when
its digest is the digest of the checkpoint being promoted; its metrics then take precedence
over the manifest's for the same names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmr1_cli.gitops import PromoteError

__all__ = ["EvalResults", "gate_metrics", "read_eval_results"]

METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class EvalResults:
    """One ``vlmr1 eval`` record."""

    path: Path
    digest: str | None
    metrics: Mapping[str, Any]
    source: str
    """How the predictions were produced: model, endpoint (with its URL) or predictions."""


def read_eval_results(path: Path) -> EvalResults:
    """A results folder or its ``metrics.json``; anything else is a PromoteError saying what."""
    file = path / METRICS_FILE if path.is_dir() else path
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PromoteError(
            f"--eval-results {path}: cannot read {file} ({exc.strerror or exc}); pass the folder `vlmr1 eval "
            "--output` wrote, or its metrics.json"
        ) from exc
    except ValueError as exc:
        raise PromoteError(f"--eval-results {path}: {file} is not JSON ({exc})") from exc
    metrics = record.get("metrics") if isinstance(record, dict) else None
    if not isinstance(metrics, dict):
        raise PromoteError(f"--eval-results {path}: {file} has no metrics object; is it a `vlmr1 eval` metrics.json?")
    source = record.get("source") if isinstance(record.get("source"), dict) else {"kind": "model"}
    kind = str(source.get("kind", "model"))
    if kind == "endpoint":
        kind = f"endpoint {source.get('endpoint')} (model {source.get('model')})"
    digest = record.get("digest")
    return EvalResults(file, digest if isinstance(digest, str) else None, metrics, kind)


def gate_metrics(manifest_metrics: Mapping[str, Any], digest: str, results: Sequence[EvalResults]) -> dict[str, Any]:
    """The metrics gates are checked against: the manifest's, then each result's on top.

    A result about another checkpoint, or about none, is refused: its numbers say nothing
    about the one being promoted.
    """
    merged = dict(manifest_metrics)
    for result in results:
        if result.digest is None:
            raise PromoteError(
                f"--eval-results {result.path} records no checkpoint digest (measured through {result.source} "
                "without --checkpoint); rerun `vlmr1 eval` with --checkpoint naming the checkpoint that was "
                "evaluated, so the gates are tied to it"
            )
        if result.digest != digest:
            raise PromoteError(
                f"--eval-results {result.path} measured checkpoint {result.digest}, not the one being promoted "
                f"({digest}); evaluate this checkpoint or --select the one that was evaluated"
            )
        merged.update(result.metrics)
    return merged
