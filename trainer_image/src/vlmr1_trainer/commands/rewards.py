"""``vlmr1 rewards``: list the registered rewards, or score a JSONL dump of completions.

``vlmr1 rewards score --reward NAME [--param KEY=VALUE]... FILE.jsonl`` reads one JSON
object per line (``completion``, ``solution`` and any extra dataset column such as
``image_size``, ``input_size``, ``completion_length``, ``accu_reward_method``) and
prints ``{"score": <float or null>}`` per line, in order — the tool for checking a
reward against VLM-R1 and for hunting reward hacking in a dump of completions.
``-`` reads standard input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

EXIT_USAGE = 2


class InputError(ValueError):
    """A malformed input line; the message names the line."""


def parse_params(pairs: Iterable[str]) -> dict[str, Any]:
    """``["k=1", "name=x"]`` -> ``{"k": 1, "name": "x"}``.

    >>> parse_params(["lenient_boxes=true", "accuracy=rec_iou", "max_length=512"])
    {'lenient_boxes': True, 'accuracy': 'rec_iou', 'max_length': 512}
    """
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param expects KEY=VALUE, got {pair!r}")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


def read_rows(stream: IO[str], name: str) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL stream; a malformed line raises InputError naming it."""
    rows = []
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            raise InputError(f"{name}:{number}: empty line (expected a JSON object)")
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{name}:{number}: not valid JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise InputError(f"{name}:{number}: expected a JSON object, got {type(row).__name__}")
        if not isinstance(row.get("completion"), str | list):
            raise InputError(f"{name}:{number}: 'completion' must be a string (or a list of chat messages)")
        if "solution" in row and not isinstance(row["solution"], str):
            raise InputError(f"{name}:{number}: 'solution' must be a string")
        rows.append(row)
    return rows


def score_rows(reward: Any, rows: list[dict[str, Any]], name: str) -> list[float | None]:
    """Score each row; why a score is null (or a fallback 0.0) goes to stderr with the line number."""
    from vlmr1_trainer.rewards import completion_text

    scores: list[float | None] = []
    for number, row in enumerate(rows, start=1):
        if "solution" in reward.columns and "solution" not in row:
            raise InputError(f"{name}:{number}: reward {reward.name} needs a 'solution' string")
        sample = {k: row.get(k) for k in reward.columns if k in row}
        value, problem = reward.score_checked(completion_text(row["completion"]), sample)
        if problem is not None:
            print(f"{name}:{number}: {problem}", file=sys.stderr)
        scores.append(value)
    return scores


def list_rewards(args: argparse.Namespace) -> int:
    import inspect

    from vlmr1_trainer import rewards

    for name in rewards.available():
        cls = rewards.reward_class(name)
        params = [
            f"{p.name}={p.default!r}" for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"
        ]
        low, high = cls.value_range
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:<16} [{low:g}, {high:g}]  {summary}")
        if params:
            print(f"{'':<16} params: {', '.join(params)}")
    return 0


def score(args: argparse.Namespace) -> int:
    from vlmr1_trainer import rewards

    try:
        reward = rewards.build(args.reward, **parse_params(args.param))
    except (LookupError, ValueError, TypeError) as exc:
        print(f"vlmr1 rewards score: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.input == "-":
            rows = read_rows(sys.stdin, "<stdin>")
        else:
            with Path(args.input).open(encoding="utf-8") as stream:
                rows = read_rows(stream, args.input)
        scores = score_rows(reward, rows, args.input)
    except (OSError, InputError, UnicodeDecodeError) as exc:
        print(f"vlmr1 rewards score: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out = sys.stdout
    for value in scores:
        out.write(json.dumps({"score": value}) + "\n")
    return 0
