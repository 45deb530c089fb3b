"""`vlmr1 checkpoints verify|list DIR` check checkpoints without torch; `pin DIR` writes the
manifest of a model folder vlmr1 did not train (a downloaded published checkpoint).

DIR may be an ``s3://bucket/prefix`` uri (boto3, with the usual AWS_* credentials and
AWS_ENDPOINT_URL): ``verify`` downloads the checkpoint's files into the cache and hashes them;
``list`` reads each manifest and checks the bucket's listing against it (names and sizes, no
download), and skips prefixes without a manifest: uploads in progress or interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlmr1_core.errors import UserError

if TYPE_CHECKING:
    from vlmr1_core.checkpoints import VerifyResult


def register(subparsers: Any) -> None:
    """Add the ``checkpoints`` command (``verify``, ``pin``, ``list``) to the ``vlmr1`` parser."""
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
    verify.add_argument("path", metavar="DIR", help="a checkpoint-<step> folder, or its s3:// uri")
    verify.set_defaults(handler=run_verify)

    pin = commands.add_parser(
        "pin",
        help="write the manifest of a model folder vlmr1 did not train; print its digest",
        description="Pin a downloaded model folder (a published VLM-R1 checkpoint, say) so a VLMService can "
        "serve it and `vlmr1 promote` can name it by digest: writes DIR/manifest.json with the sha256 of every "
        "file in DIR and prints the digest. A folder with a manifest is not rewritten: its digest is printed "
        "when it verifies (exit 0), its problems when it does not (exit 1).",
    )
    pin.add_argument("path", metavar="DIR", help="the model folder (config.json, weights, processor files)")
    pin.set_defaults(handler=run_pin)

    listing = commands.add_parser(
        "list",
        help="list the checkpoints of a training output folder, newest first",
        description="One line per checkpoint-<step> folder: step, status, digest and metrics. "
        "Exit 1 when any checkpoint fails verification. For s3:// the status is 'complete' when the bucket "
        "holds every file of the manifest at its size (hashing needs a download: use verify); prefixes without "
        "a manifest (uploads in progress or interrupted) are not listed.",
    )
    listing.add_argument("directory", metavar="DIR", help="folder holding checkpoint-<step> folders, or its s3:// uri")
    listing.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    listing.add_argument("--no-verify", action="store_true", help="read manifests only; do not hash files")
    listing.set_defaults(handler=run_list)


def run_pin(args: argparse.Namespace) -> int:
    """Handler of ``vlmr1 checkpoints pin``."""
    from vlmr1_core.checkpoints import pin_folder

    _require_folder(args.path)
    try:
        digest = pin_folder(args.path)
    except ValueError as exc:
        print(f"{args.path}: {exc}", file=sys.stderr)
        return 1
    print(digest)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Handler of ``vlmr1 checkpoints verify``."""
    from vlmr1_core.checkpoints import verify_checkpoint

    if args.path.startswith("s3://"):
        import tempfile

        from vlmr1_core.checkpoint_store import split_s3, verify_remote
        from vlmr1_core.objectstore import S3Store

        bucket, key = split_s3(args.path)
        with tempfile.TemporaryDirectory(prefix="vlmr1-verify-") as scratch:
            result = verify_remote(S3Store(bucket), key, Path(scratch))
    else:
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

    if args.directory.startswith("s3://"):
        results = _list_s3(args.directory, verify=not args.no_verify)
        verified = "complete"
    else:
        _require_folder(args.directory)
        results = list_checkpoints(args.directory, verify=not args.no_verify)
        verified = "ok"
    failed = False
    if not results:
        print(f"{args.directory}: no checkpoints", file=sys.stderr)
    for result in results:
        status = "BROKEN" if not result.ok else "unverified" if args.no_verify else verified
        failed = failed or status == "BROKEN"
        if args.json:
            record = {
                "path": f"{args.directory.rstrip('/')}/{result.path.name}"
                if verified == "complete"
                else str(result.path),
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


def _list_s3(uri: str, *, verify: bool) -> list[VerifyResult]:
    from vlmr1_core.checkpoint_store import list_remote, split_s3
    from vlmr1_core.objectstore import S3Store

    bucket, prefix = split_s3(uri)
    listing = list_remote(S3Store(bucket), prefix)
    for key in listing.incomplete:
        print(
            f"{key.rsplit('/', 1)[-1]}: no manifest yet (an upload in progress or interrupted), skipped",
            file=sys.stderr,
        )
    results = [c.result for c in listing.checkpoints]
    if not verify:  # manifests only: the listing's findings are not reported
        for result in results:
            result.missing, result.changed, result.extra = [], [], []
    return results
