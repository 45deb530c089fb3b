"""`vlmr1 rewards list|score`: the reward registry from the command line (vlmr1_trainer.commands.rewards)."""

from __future__ import annotations

from typing import Any

from vlmr1_cli._lazy import lazy


def register(subparsers: Any) -> None:
    """Add the ``rewards`` command (with ``list`` and ``score``) to the ``vlmr1`` parser."""
    parser = subparsers.add_parser(
        "rewards",
        help="list rewards or score completions with one",
        description="List the registered rewards, or score a JSONL file of completions with one of them.",
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "list",
        help="list reward names, value ranges and parameters",
        description="List the built-in rewards; --reward also describes MODULE:ATTRIBUTE references.",
    )
    listing.add_argument(
        "--reward", action="append", default=[], metavar="MODULE:ATTRIBUTE", help="also describe this reference"
    )
    _path_option(listing)
    listing.set_defaults(
        handler=lazy("vlmr1_trainer.commands.rewards:list_rewards", command="rewards list", extra="trainer")
    )

    score = actions.add_parser(
        "score",
        help="score a JSONL file of completions",
        description='Print {"score": <float or null>} for each input line, in order.',
    )
    score.add_argument(
        "--reward", required=True, metavar="NAME", help="built-in reward name (see `rewards list`) or MODULE:ATTRIBUTE"
    )
    _path_option(score)
    score.add_argument(
        "--timeout",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="time budget per completion, as spec.scoring.timeoutSeconds (default 1)",
    )
    score.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes for a CPU-heavy reward (default: this machine's CPUs)",
    )
    score.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="reward parameter; VALUE is parsed as JSON when it can be, else taken as a string (repeatable)",
    )
    score.add_argument(
        "input", metavar="INPUT.jsonl", help="one JSON object per line with completion and solution; - for stdin"
    )
    score.set_defaults(handler=lazy("vlmr1_trainer.commands.rewards:score", command="rewards score", extra="trainer"))


def _path_option(parser: Any) -> None:
    parser.add_argument(
        "--path",
        action="append",
        default=[],
        metavar="DIR",
        help="folder of reward code put first on the import path, as spec.rewardCode (repeatable)",
    )
