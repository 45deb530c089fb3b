"""The `vlmr1` command line.

Each subcommand lives in its own module here with a `register(subparsers)` function; its
handler imports the code that does the work (in the trainer, the operator, ...) only when it
runs, so `vlmr1 --help` and the operator start fast and every image lists every command.
A shipped subcommand is added by listing its module here; tools outside the shipped packages
(the local control plane of the dev extra) add theirs through the ``vlmr1.commands`` entry
point group, so nothing shipped imports them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, entry_points, version

COMMAND_MODULES: tuple[str, ...] = (
    "vlmr1_cli.validate",
    "vlmr1_cli.crds",
    "vlmr1_cli.operator",
    "vlmr1_cli.run",
    "vlmr1_cli.rewards",
    "vlmr1_cli.checkpoints",
    "vlmr1_cli.eval",
    "vlmr1_cli.promote",
)
PLUGIN_GROUP = "vlmr1.commands"
"""Entry points ``name = "module:register"`` that add subcommands from outside the shipped packages."""


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
    for plugin in entry_points(group=PLUGIN_GROUP):
        try:
            register = plugin.load()
        except ModuleNotFoundError:
            continue  # declared by the distribution, not installed in this image (the dev tools)
        register(subparsers)
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
