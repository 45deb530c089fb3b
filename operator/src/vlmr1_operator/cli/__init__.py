"""The `vlmr1` command line.

Each subcommand lives in its own module with a `register(subparsers)` function and
imports what it needs (pydantic, torch, kopf) inside its handler, so `vlmr1 --help`
and the operator start fast. A later subcommand is added by listing its module here.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

COMMAND_MODULES: tuple[str, ...] = (
    "vlmr1_operator.cli.validate",
    "vlmr1_operator.cli.crds",
    "vlmr1_operator.cli.operator",
    "vlmr1_operator.cli.dev",
    "vlmr1_trainer.local",
    "vlmr1_trainer.cli",
    "vlmr1_trainer.cli_checkpoints",
    "vlmr1_trainer.cli_eval",
    "vlmr1_operator.cli.promote",
)


def _version() -> str:
    try:
        return version("vlmr1")
    except PackageNotFoundError:  # running from a source tree without an install
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlmr1",
        description="GRPO reinforcement learning of vision-language models on verifiable rewards, "
        "on Kubernetes or locally.",
    )
    parser.add_argument("--version", action="version", version=f"vlmr1 {_version()}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
