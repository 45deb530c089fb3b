"""`vlmr1 validate FILE...`: check GRPOJob / VLMService manifests without a cluster."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check GRPOJob and VLMService manifests (file, line and field of every problem)",
        description="Validate manifests against the vlmr1.io/v1alpha1 API, including the cross-field "
        "rules the API server enforces and the reward names vlmr1 registers. Prints one line per object, "
        "or every problem with its file, line and field (exit 2).",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="YAML files (several documents allowed)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``vlmr1 validate``: every file is checked; exit 2 when any has a problem."""
    from vlmr1_core.api.manifest import ManifestError, load_manifests
    from vlmr1_core.errors import EXIT_USER_ERROR

    failed = False
    for path in args.files:
        try:
            for obj in load_manifests(path):
                print(f"{path}: {obj.kind} {obj.metadata.name} is valid")
        except ManifestError as exc:
            # Printed here rather than raised: the files after this one are checked too.
            failed = True
            print(exc, file=sys.stderr)
    return EXIT_USER_ERROR if failed else 0
