"""`vlmr1 validate FILE...`: check GRPOJob / VLMService manifests without a cluster."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vlmr1_core.api.grpojob import GRPOJob
    from vlmr1_core.api.manifest import Problem


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check GRPOJob and VLMService manifests (file, line and field of every problem)",
        description="Validate manifests against the vlmr1.io/v1alpha1 API, including the cross-field "
        "rules the API server enforces and the reward names vlmr1 registers. A MODULE:ATTRIBUTE reward is "
        "imported here (with a local rewardCode.uri folder on the import path, so its module's code runs) "
        "and must be a function or class; one that cannot be imported here gets a note, not an error (the "
        "trainer checks it before its first step). Prints one line per object, or every problem with its "
        "file, line and field (exit 2).",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="YAML files (several documents allowed)")
    parser.add_argument(
        "--extra-reward",
        action="append",
        default=[],
        metavar="NAME",
        help="a reward name a custom trainer image registers, accepted besides vlmr1's own (repeatable; "
        "the operator's extraRewardNames setting)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``vlmr1 validate``: every file is checked; exit 2 when any has a problem."""
    from vlmr1_core.api.grpojob import GRPOJob
    from vlmr1_core.api.manifest import ManifestError, load_manifests
    from vlmr1_core.errors import EXIT_USER_ERROR
    from vlmr1_core.reward_config import KNOWN_REWARDS

    known_rewards = KNOWN_REWARDS | set(args.extra_reward)
    failed = False
    for path in args.files:
        try:
            objs = load_manifests(path, known_rewards)
        except ManifestError as exc:
            # Printed here rather than raised: the files after this one are checked too.
            failed = True
            print(exc, file=sys.stderr)
            continue
        for index, obj in enumerate(objs):
            notes, problems = check_references(str(path), index, obj) if isinstance(obj, GRPOJob) else ([], [])
            for note in notes:
                print(note)
            for problem in problems:
                print(problem, file=sys.stderr)
            failed = failed or bool(problems)
            if not problems:
                print(f"{path}: {obj.kind} {obj.metadata.name} is valid")
    return EXIT_USER_ERROR if failed else 0


def check_references(path: str, index: int, job: GRPOJob) -> tuple[list[str], list[Problem]]:
    """(notes, problems) about the MODULE:ATTRIBUTE rewards of the ``index``-th object of ``path``.

    Each is imported here, with a local ``rewardCode.uri`` folder (relative to the manifest's
    folder) first on the import path: an attribute that is missing, or neither a function nor a
    class, is a problem. One that cannot be imported here (the code is in a ConfigMap or the
    trainer image, or needs packages this machine lacks) is a note: the trainer checks it.
    """
    from vlmr1_core.api.manifest import Problem, line_of_field

    label = f"{path}: {job.kind} {job.metadata.name}"
    notes: list[str] = []
    problems: list[Problem] = []
    references = [(i, r.name) for i, r in enumerate(job.spec.rewards) if r.kind == "reference"]
    if not references:
        return notes, problems
    folder = _local_reward_code(path, job)
    if folder is not None and not folder.is_dir():
        notes.append(f"{label}: spec.rewardCode.uri {folder} is not a folder here")
        folder = None
    with _importing_from(folder):
        for i, name in references:
            field = f"spec.rewards[{i}].name"
            module_name, _, attribute = name.partition(":")
            try:
                module = importlib.import_module(module_name)
            except (Exception, SystemExit) as exc:  # missing here, or its own code failing on import
                why = f"{type(exc).__name__}: {exc}"
                notes.append(
                    f"{label}: {field} {name} not checked here ({why}); the trainer checks it before the first step"
                )
                continue
            wrong = _not_a_reward(module, attribute)
            if wrong:
                where = getattr(module, "__file__", None) or module_name
                problems.append(
                    Problem(path, line_of_field(path, field, index), field, f"{name}: {wrong} (imported from {where})")
                )
    return notes, problems


def _local_reward_code(path: str, job: GRPOJob) -> Path | None:
    """The job's rewardCode folder on this machine: a local uri, relative to the manifest's folder."""
    code = job.spec.reward_code
    if code is None or code.uri is None or "://" in code.uri:
        return None
    folder = Path(code.uri).expanduser()
    return folder if folder.is_absolute() else Path(path).resolve().parent / folder


def _not_a_reward(module: Any, attribute: str) -> str | None:
    """Why ``module``'s dotted ``attribute`` is no reward (missing, or neither callable nor a
    class), or None."""
    obj = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            return f"module {module.__name__} has no attribute {attribute!r}"
        obj = getattr(obj, part)
    if callable(obj):  # a function, a class, or an instance with __call__
        return None
    return f"{attribute} is a {type(obj).__name__}, not a function or class"


@contextmanager
def _importing_from(folder: Path | None) -> Iterator[None]:
    """Imports with ``folder`` first on the path, writing no bytecode into it; then the path is put
    back and the modules imported from the folder are forgotten (another file's folder may hold a
    module of the same name)."""
    path, before, bytecode = list(sys.path), set(sys.modules), sys.dont_write_bytecode
    if folder is not None:
        sys.path.insert(0, str(folder))
    sys.dont_write_bytecode = True
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path[:] = path
        sys.dont_write_bytecode = bytecode
        if folder is not None:
            for name in set(sys.modules) - before:
                origin = getattr(sys.modules[name], "__file__", None)
                if origin and Path(origin).resolve().is_relative_to(folder.resolve()):
                    del sys.modules[name]
