"""The `vlmr1` command line.

Each subcommand lives in its own module here with a `register(subparsers)` function; its
handler imports the code that does the work (in the trainer, the operator, ...) only when it
runs, so `vlmr1 --help` and the operator start fast and every image lists every command.
A shipped subcommand is added by listing its module here; tools outside the shipped packages
(the local control plane of the dev extra) add theirs through the ``vlmr1.commands`` entry
point group, so nothing shipped imports them.

Errors the user can fix (:class:`vlmr1_core.errors.UserError`: a bad spec, a missing file, a
bad sample, an unknown reward, an unreachable hub) are printed here, in one place, as one line
naming the file, line or field and the fix, and exit 2; ``vlmr1 --debug`` adds the traceback.
Every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, entry_points, version

from vlmr1_core.errors import EXIT_USER_ERROR, UserError, report

COMMAND_MODULES: tuple[str, ...] = (
    "vlmr1_cli.validate",
    "vlmr1_cli.crds",
    "vlmr1_cli.operator",
    "vlmr1_cli.run",
    "vlmr1_cli.rewards",
    "vlmr1_cli.checkpoints",
    "vlmr1_cli.eval",
    "vlmr1_cli.plot",
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
    parser.add_argument(
        "--debug",
        action="store_true",
        dest="traceback",
        help="show the Python traceback of errors the user can fix too (default: one line, or $VLMR1_DEBUG=1)",
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command", required=True)
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
    # A nested command's handler may name itself more precisely (`vlmr1 rewards score`).
    program = getattr(args.handler, "program", None) or f"vlmr1 {args.command}"
    debug = args.traceback or os.environ.get("VLMR1_DEBUG", "") not in ("", "0")
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    except UserError as exc:
        return report(exc, program, sys.stderr, debug=debug)
    except SystemExit as exc:
        if not isinstance(exc.code, str):
            raise
        # Code outside this package that still stops with SystemExit("message") (the operator's
        # start-up checks) is a user error too: same exit status and prefix as a UserError.
        if debug:
            traceback.print_exception(exc, file=sys.stderr)
        print(f"{program}: {exc.code}", file=sys.stderr)
        return EXIT_USER_ERROR
    return code


if __name__ == "__main__":
    sys.exit(main())
