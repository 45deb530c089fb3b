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

    listing = actions.add_parser("list", help="list reward names, value ranges and parameters")
    listing.set_defaults(
        handler=lazy("vlmr1_trainer.commands.rewards:list_rewards", command="rewards list", extra="trainer")
    )

    score = actions.add_parser(
        "score",
        help="score a JSONL file of completions",
        description='Print {"score": <float or null>} for each input line, in order.',
    )
    score.add_argument("--reward", required=True, metavar="NAME", help="registered reward name (see `rewards list`)")
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
