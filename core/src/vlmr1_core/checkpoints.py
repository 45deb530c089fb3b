"""Atomic, verifiable checkpoints: ``<dir>/checkpoint-<step>/`` with a ``manifest.json``.

A checkpoint is written into a hidden temporary folder next to its final place and
renamed when complete (files and manifest fsynced first), so a crash never leaves a
folder that looks like a checkpoint but is not one. The manifest records the step, the
sha256 and size of every file, the training metrics at that step and the TrainerConfig
that produced it (camelCase, as in the GRPOJob). The checkpoint's digest is
``sha256:<hex>`` of the manifest's bytes: it pins every file, so a VLMService that names
a digest gets exactly the weights that were evaluated.

One writer per folder (rank 0). Standard library and pydantic only: the operator and
``vlmr1 checkpoints`` use it without torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
"""A checkpoint digest as written everywhere: ``sha256:`` and 64 lower-case hex digits."""

__all__ = [
    "CHECKPOINTS",
    "DIGEST_PATTERN",
    "MANIFEST",
    "MANIFEST_FORMAT",
    "CheckpointInfo",
    "Selector",
    "VerifyResult",
    "best_index",
    "checkpoint_dirs",
    "checkpoint_name",
    "find_resumable",
    "kept_by_pruning",
    "list_checkpoints",
    "manifest_digest",
    "metric_value",
    "parse_manifest",
    "prune",
    "save_checkpoint",
    "select_checkpoint",
    "selector",
    "sha256_file",
    "step_of",
    "verify_checkpoint",
]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "vlmr1.io/checkpoint/v1"
CHECKPOINTS = "checkpoints"
"""The folder of a run (its output folder, and ``checkpoint.uri`` in a bucket) holding its
``checkpoint-<step>`` folders."""
_PREFIX = "checkpoint-"
_NAME = re.compile(r"^checkpoint-(\d+)$")
_TMP_PREFIX = ".tmp-checkpoint-"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class CheckpointInfo:
    """A complete checkpoint."""

    path: Path
    step: int
    digest: str
    """``sha256:<hex>`` of ``manifest.json``."""
    metrics: dict[str, Any]
    uri: str
    """Where consumers find it: ``<base uri>/checkpoint-<step>`` (the path when no base uri was given)."""


@dataclass
class VerifyResult:
    """The outcome of checking a checkpoint folder against its manifest."""

    path: Path
    digest: str | None = None
    step: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Problems with the manifest itself (absent, unreadable, wrong format)."""

    @property
    def ok(self) -> bool:
        """True when the manifest is valid and every file matches it."""
        return not (self.missing or self.changed or self.extra or self.errors)

    def problems(self) -> list[str]:
        """One line per problem, for people."""
        return [
            *self.errors,
            *(f"missing: {name}" for name in self.missing),
            *(f"changed: {name}" for name in self.changed),
            *(f"extra: {name}" for name in self.extra),
        ]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files(root: Path) -> Iterator[str]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path.relative_to(root).as_posix()


def _json_safe(value: Any) -> Any:
    # Strict JSON: a NaN loss or an inf ratio becomes null instead of an unparsable token.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _json_safe(value.item())
    return value


def _config_dict(config: BaseModel | Mapping[str, Any] | None) -> dict[str, Any] | None:
    if config is None:
        return None
    if isinstance(config, BaseModel):
        dumped: dict[str, Any] = config.model_dump(mode="json", by_alias=True)
        return dumped
    return dict(config)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _manifest_bytes(step: int, files: dict[str, dict[str, Any]], metrics: Mapping[str, Any], config: Any) -> bytes:
    manifest = {
        "format": MANIFEST_FORMAT,
        "step": step,
        "files": files,
        "metrics": _json_safe(dict(metrics)),
        "config": _json_safe(config),
    }
    return (json.dumps(manifest, sort_keys=True, indent=2, allow_nan=False) + "\n").encode()


def manifest_digest(data: bytes) -> str:
    """A checkpoint's digest: ``sha256:<hex>`` of its manifest's bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _write_manifest(folder: Path, step: int, metrics: Mapping[str, Any], config: Any) -> bytes:
    """Hash every file of ``folder`` (flushed to disk first) and write its manifest last."""
    files: dict[str, dict[str, Any]] = {}
    for name in _files(folder):
        path = folder / name
        files[name] = {"sha256": sha256_file(path), "size": path.stat().st_size}
        _fsync(path)
    data = _manifest_bytes(step, files, metrics, config)
    partial = folder / f".{MANIFEST}.partial"
    with partial.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    partial.rename(folder / MANIFEST)  # a reader sees the whole manifest or none
    _fsync(folder)
    return data


def pin_folder(folder: Path | str, *, step: int = 0) -> str:
    """Write the manifest of a model folder vlmr1 did not train (a published checkpoint,
    downloaded), so it can be served and promoted by digest; return the digest.

    Every file in the folder is pinned. A folder that already has a manifest is not
    rewritten: its digest is returned when it verifies, and a ValueError lists the
    problems when it does not (changed files need a new folder, not a new manifest).
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder")
    if (root / MANIFEST).exists():
        result = verify_checkpoint(root)
        if not result.ok or result.digest is None:
            raise ValueError(f"{root} already has a {MANIFEST} that does not verify: " + "; ".join(result.problems()))
        return result.digest
    (root / f".{MANIFEST}.partial").unlink(missing_ok=True)  # an interrupted pin's
    if not any(_files(root)):
        raise ValueError(f"{root} holds no files to pin")
    return manifest_digest(_write_manifest(root, step, {}, None))


def _uri(base: str | None, path: Path) -> str:
    return f"{base.rstrip('/')}/{path.name}" if base else str(path)


def save_checkpoint(
    directory: Path | str,
    step: int,
    write_files_fn: Callable[[Path], object],
    metrics: Mapping[str, Any] | None = None,
    config: BaseModel | Mapping[str, Any] | None = None,
    *,
    uri: str | None = None,
    evaluate: Callable[[Path], Mapping[str, Any]] | None = None,
) -> CheckpointInfo:
    """Write ``<directory>/checkpoint-<step>`` atomically and return its digest.

    ``write_files_fn(tmp)`` writes the checkpoint's files (weights, processor, optimizer
    state) into the folder ``tmp``; if it raises, nothing becomes visible. ``evaluate(tmp)``
    then scores the written files and returns metrics added to ``metrics`` (any files it
    writes into ``tmp`` are part of the checkpoint): the manifest, and so the digest, pins
    the evaluation results with the weights. ``config`` is recorded camelCase (a
    TrainerConfig, or a dict already in that form). ``uri`` is the base uri of ``directory``
    as consumers see it (e.g. ``pvc://claim/run``).
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{step}-", dir=root))
    try:
        write_files_fn(tmp)
        metrics = {**(metrics or {}), **(evaluate(tmp) if evaluate is not None else {})}
        if (tmp / MANIFEST).exists():
            raise ValueError(f"write_files_fn wrote {MANIFEST}, which is reserved for the checkpoint manifest")
        data = _write_manifest(tmp, step, metrics, _config_dict(config))
        if final.exists():
            # A re-save of the same step (after a resume): move the old one aside first, as
            # rename cannot replace a non-empty folder; a crash in between leaves only the new
            # checkpoint or the hidden old one, never a mix.
            aside = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{step}-old-", dir=root))
            final.rename(aside / final.name)
        tmp.rename(final)
        _fsync(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for stale in root.glob(f"{_TMP_PREFIX}{step}-old-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return CheckpointInfo(
        path=final, step=step, digest=manifest_digest(data), metrics=_json_safe(metrics), uri=_uri(uri, final)
    )


def _read_manifest(path: Path, result: VerifyResult) -> dict[str, Any] | None:
    manifest_path = path / MANIFEST
    try:
        data = manifest_path.read_bytes()
    except FileNotFoundError:
        result.errors.append(f"no {MANIFEST} (not a checkpoint, or an incomplete one)")
        return None
    except OSError as exc:
        result.errors.append(f"cannot read {MANIFEST}: {exc}")
        return None
    return parse_manifest(data, result)


def parse_manifest(data: bytes, result: VerifyResult) -> dict[str, Any] | None:
    """The manifest in ``data``, its digest, step and metrics recorded in ``result``; None (and
    the problem in ``result.errors``) when it is not a valid manifest. File names that would
    leave the checkpoint folder (absolute, ``..``) make it invalid."""
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        result.errors.append(f"{MANIFEST} is not valid JSON: {exc}")
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        result.errors.append(f"{MANIFEST} is not a {MANIFEST_FORMAT} manifest")
        return None
    files, step = manifest.get("files"), manifest.get("step")
    if not isinstance(files, dict) or not isinstance(step, int) or isinstance(step, bool):
        result.errors.append(f"{MANIFEST} lacks a files table or an integer step")
        return None
    unsafe = [name for name in files if not isinstance(name, str) or name.startswith("/") or ".." in name.split("/")]
    if unsafe:
        result.errors.append(f"{MANIFEST} names files outside the checkpoint: {unsafe[:3]}")
        return None
    result.digest = manifest_digest(data)
    result.step = step
    metrics = manifest.get("metrics")
    result.metrics = metrics if isinstance(metrics, dict) else {}
    return manifest


def verify_checkpoint(path: Path | str) -> VerifyResult:
    """Check every file of a checkpoint against its manifest (missing, changed and extra files)."""
    root = Path(path)
    result = VerifyResult(path=root)
    if not root.is_dir():
        result.errors.append(f"{root} is not a folder")
        return result
    manifest = _read_manifest(root, result)
    if manifest is None:
        return result
    named_step = step_of(root.name)
    if named_step is not None and named_step != result.step:
        result.errors.append(f"folder {root.name} holds the manifest of step {result.step}")
    expected: dict[str, Any] = manifest["files"]
    present = {name for name in _files(root) if name != MANIFEST}
    for name in sorted(expected):
        entry = expected[name]
        if name not in present:
            result.missing.append(name)
        elif not isinstance(entry, dict) or entry.get("sha256") != sha256_file(root / name):
            result.changed.append(name)
    result.extra = sorted(present - set(expected))
    return result


def checkpoint_name(step: int) -> str:
    """The folder (or object prefix) name of a step's checkpoint.

    >>> checkpoint_name(4)
    'checkpoint-4'
    """
    return f"{_PREFIX}{step}"


def step_of(name: str) -> int | None:
    """The step a checkpoint folder's name carries; None for any other name.

    >>> step_of("checkpoint-4"), step_of(".tmp-checkpoint-4-x1"), step_of("checkpoint-4b")
    (4, None, None)
    """
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


def checkpoint_dirs(directory: Path | str) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``checkpoint-<step>`` folder, newest first (unverified)."""
    root = Path(directory)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        step = step_of(child.name)
        if step is not None and child.is_dir():
            found.append((step, child))
    return sorted(found, key=lambda item: item[0], reverse=True)


def _info(result: VerifyResult, uri: str | None) -> CheckpointInfo:
    assert result.digest is not None and result.step is not None
    return CheckpointInfo(
        path=result.path, step=result.step, digest=result.digest, metrics=result.metrics, uri=_uri(uri, result.path)
    )


def find_resumable(directory: Path | str, *, uri: str | None = None) -> CheckpointInfo | None:
    """The newest checkpoint whose manifest verifies; broken ones are logged and skipped."""
    for _, path in checkpoint_dirs(directory):
        result = verify_checkpoint(path)
        if result.ok:
            return _info(result, uri)
        log.warning("skipping checkpoint %s: %s", path, "; ".join(result.problems()))
    return None


def list_checkpoints(directory: Path | str, *, verify: bool = True) -> list[VerifyResult]:
    """Every checkpoint folder, newest first, with its verification (or just its manifest)."""
    results = []
    for _, path in checkpoint_dirs(directory):
        if verify:
            results.append(verify_checkpoint(path))
        else:
            result = VerifyResult(path=path)
            _read_manifest(path, result)
            results.append(result)
    return results


def metric_value(metrics: Mapping[str, Any], name: str) -> float | None:
    """``metrics[name]`` as a finite float, or None (absent, not a number, NaN or inf)."""
    value = metrics.get(name)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def best_index(
    candidates: Sequence[tuple[int, Mapping[str, Any]]], metric: str, *, greater_is_better: bool = True
) -> int | None:
    """Index of the best ``(step, metrics)`` by ``metric``; ties go to the higher step.

    Candidates without a finite value of the metric are never best; None when none has one.
    The one rule for "best" everywhere: pruning, the GRPOJob status and ``vlmr1 promote``.

    >>> best_index([(2, {"reward": 0.5}), (4, {"reward": 0.5}), (6, {})], "reward")
    1
    >>> best_index([(2, {"loss": 0.1}), (4, {"loss": 0.3})], "loss", greater_is_better=False)
    0
    """
    sign = 1.0 if greater_is_better else -1.0
    scored = [
        (sign * value, step, i)
        for i, (step, m) in enumerate(candidates)
        if (value := metric_value(m, metric)) is not None
    ]
    return max(scored)[2] if scored else None


Selector = Literal["best", "latest"] | int
"""Which checkpoint: ``"best"``, ``"latest"`` or a step number."""


def selector(text: str) -> Selector:
    """``best``, ``latest`` or a step's digits (a VLMService's ``model.fromJob.checkpoint``) as a Selector."""
    value = text.strip()
    if value in ("best", "latest"):
        return "best" if value == "best" else "latest"
    if value.isdigit():
        return int(value)
    raise ValueError(f"{text!r} is not best, latest or a step number")


def select_checkpoint(
    candidates: Sequence[tuple[int, Mapping[str, Any]]],
    which: Selector,
    *,
    best_metric: str = "reward",
    greater_is_better: bool = True,
    marked_best: int | None = None,
) -> int | None:
    """Index of the ``(step, metrics)`` candidate ``which`` names, or None when there is none.

    ``latest`` is the highest step; a number is the checkpoint of that step; ``best`` is the step
    ``marked_best`` when the source marked one that is among the candidates (a GRPOJob's
    ``status.bestCheckpoint``), else :func:`best_index` by ``best_metric``. The one selection
    rule of ``vlmr1 promote --select`` and of a VLMService's ``model.fromJob.checkpoint``.

    >>> select_checkpoint([(2, {"reward": 0.9}), (4, {"reward": 0.1})], "best")
    0
    >>> select_checkpoint([(2, {"reward": 0.9}), (4, {"reward": 0.1})], "best", marked_best=4)
    1
    >>> select_checkpoint([(2, {}), (4, {})], "latest"), select_checkpoint([(2, {})], 3)
    (1, None)
    """
    steps = [step for step, _ in candidates]
    if not steps:
        return None
    if which == "latest":
        return steps.index(max(steps))
    if which == "best":
        if marked_best is not None and marked_best in steps:
            return steps.index(marked_best)
        return best_index(candidates, best_metric, greater_is_better=greater_is_better)
    return steps.index(which) if which in steps else None


def prune(
    directory: Path | str, keep: int, best_metric: str | None = "reward", *, greater_is_better: bool = True
) -> list[Path]:
    """Delete all but the newest ``keep`` checkpoints, never the best by ``best_metric``.

    Only folders with a readable manifest count (files are not re-hashed: pruning runs
    after every save). Leftover temporary folders of crashed saves are removed too.
    Returns the deleted checkpoint folders.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    root = Path(directory)
    checkpoints = [r for r in list_checkpoints(root, verify=False) if r.digest is not None]
    kept_steps = kept_by_pruning(
        [(r.step or 0, r.metrics) for r in checkpoints], keep, best_metric, greater_is_better=greater_is_better
    )
    removed = []
    for result in checkpoints:
        if result.step not in kept_steps:
            shutil.rmtree(result.path)
            removed.append(result.path)
    for leftover in root.glob(f"{_TMP_PREFIX}*"):
        with contextlib.suppress(OSError):
            shutil.rmtree(leftover)
    return removed


def kept_by_pruning(
    candidates: Sequence[tuple[int, Mapping[str, Any]]],
    keep: int,
    best_metric: str | None = "reward",
    *,
    greater_is_better: bool = True,
) -> set[int]:
    """The steps pruning keeps of ``(step, metrics)`` candidates listed newest first: the first
    ``keep``, and the best by ``best_metric`` (the rule for folders and for object storage alike).

    >>> sorted(kept_by_pruning([(6, {"reward": 0.1}), (4, {"reward": 0.2}), (2, {"reward": 0.9})], 1))
    [2, 6]
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    kept = {step for step, _ in candidates[:keep]}
    if best_metric is not None:
        best = best_index(candidates, best_metric, greater_is_better=greater_is_better)
        if best is not None:
            kept.add(candidates[best][0])
    return kept
