"""`vlmr1 checkpoints verify DIR` and `vlmr1 checkpoints list DIR`: check checkpoints without torch."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vlmr1_core.errors import UserError


def register(subparsers: Any) -> None:
    """Add the ``checkpoints`` command (with ``verify`` and ``list``) to the ``vlmr1`` parser."""
    parser = subparsers.add_parser(
        "checkpoints",
        help="verify and list training checkpoints (manifest, sha256 of every file, digest)",
        description="Inspect checkpoints written by vlmr1 training: each checkpoint-<step> folder holds a "
        "manifest.json with the sha256 of every file; its digest is the sha256 of the manifest.",
    )
    commands = parser.add_subparsers(title="subcommands", metavar="SUBCOMMAND", required=True)

    verify = commands.add_parser(
        "verify",
        help="check one checkpoint against its manifest; print its digest",
        description="Exit 0 and print the digest when every file matches the manifest; exit 1 and list "
        "every missing, changed or extra file otherwise (exit 2 when DIR is not a folder).",
    )
    verify.add_argument("path", metavar="DIR", help="a checkpoint-<step> folder")
    verify.set_defaults(handler=run_verify)

    listing = commands.add_parser(
        "list",
        help="list the checkpoints of a training output folder, newest first",
        description="One line per checkpoint-<step> folder: step, status, digest and metrics. "
        "Exit 1 when any checkpoint fails verification.",
    )
    listing.add_argument("directory", metavar="DIR", help="folder holding checkpoint-<step> folders")
    listing.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    listing.add_argument("--no-verify", action="store_true", help="read manifests only; do not hash files")
    listing.set_defaults(handler=run_list)


def run_verify(args: argparse.Namespace) -> int:
    """Handler of ``vlmr1 checkpoints verify``."""
    from vlmr1_core.checkpoints import verify_checkpoint

    _require_folder(args.path)
    result = verify_checkpoint(args.path)
    if result.ok:
        print(result.digest)
        return 0
    print(f"{args.path}: checkpoint does not verify", file=sys.stderr)
    for problem in result.problems():
        print(f"  {problem}", file=sys.stderr)
    return 1


def _require_folder(path: str) -> None:
    # A path that is not there is a typo, not a checkpoint that fails verification (exit 1).
    if not Path(path).is_dir():
        raise UserError(f"{path} is not a folder")


def run_list(args: argparse.Namespace) -> int:
    """Handler of ``vlmr1 checkpoints list``."""
    from vlmr1_core.checkpoints import list_checkpoints

    _require_folder(args.directory)
    results = list_checkpoints(args.directory, verify=not args.no_verify)
    failed = False
    if not results:
        print(f"{args.directory}: no checkpoints", file=sys.stderr)
    for result in results:
        status = "BROKEN" if not result.ok else "unverified" if args.no_verify else "ok"
        failed = failed or status == "BROKEN"
        if args.json:
            record = {
                "path": str(result.path),
                "step": result.step,
                "status": status,
                "digest": result.digest,
                "metrics": result.metrics,
                "problems": result.problems(),
            }
            print(json.dumps(record, sort_keys=True))
            continue
        metrics = " ".join(f"{k}={v}" for k, v in sorted(result.metrics.items()))
        step = "?" if result.step is None else str(result.step)
        print(f"{result.path.name}\tstep={step}\t{status}\t{result.digest or '-'}\t{metrics}".rstrip())
        if status == "BROKEN":
            for problem in result.problems():
                print(f"  {problem}")
    return 1 if failed else 0
