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
    from vlmr1_core.api.manifest import ManifestError, load_manifests
    from vlmr1_core.config import KNOWN_REWARDS
    from vlmr1_core.errors import EXIT_USER_ERROR

    known_rewards = KNOWN_REWARDS | set(args.extra_reward)
    failed = False
    for path in args.files:
        try:
            for obj in load_manifests(path, known_rewards):
                print(f"{path}: {obj.kind} {obj.metadata.name} is valid")
        except ManifestError as exc:
            # Printed here rather than raised: the files after this one are checked too.
            failed = True
            print(exc, file=sys.stderr)
    return EXIT_USER_ERROR if failed else 0
