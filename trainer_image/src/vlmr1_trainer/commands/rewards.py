"""``vlmr1 rewards``: list the rewards, or score a JSONL dump of completions with one.

``vlmr1 rewards score --reward NAME [--param KEY=VALUE]... FILE.jsonl`` reads one JSON
object per line (``completion``, ``solution`` and any extra dataset column such as
``image_size``, ``input_size``, ``completion_length``, ``accu_reward_method``) and
prints ``{"score": <float or null>}`` per line, in order — the tool for checking a
reward against VLM-R1 and for hunting reward hacking in a dump of completions.
``-`` reads standard input. NAME is a built-in or a ``MODULE:ATTRIBUTE`` reference (``--path
DIR`` puts a folder of reward code on the import path, as ``spec.rewardCode`` does in a job).
Scoring is bounded and pooled exactly as in training (:mod:`vlmr1_trainer.rewards.scoring`):
a completion over the budget scores the timeout score and says so on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vlmr1_trainer.rewards.scoring import ScoredReward

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


def score_rows(scored: ScoredReward, rows: list[dict[str, Any]], name: str) -> list[float | None]:
    """Score each row as training would (budget, pool); why a score is null, a fallback 0.0 or
    over budget goes to stderr with the line number."""
    from vlmr1_trainer.rewards import completion_text
    from vlmr1_trainer.rewards.reference import ReferenceReward

    reward = scored.reward
    pass_all = isinstance(reward, ReferenceReward) and reward.pass_all
    samples = []
    for number, row in enumerate(rows, start=1):
        if "solution" in reward.columns and "solution" not in row and not pass_all:
            raise InputError(f"{name}:{number}: reward {reward.name} needs a 'solution' string")
        keys = [k for k in row if k != "completion"] if pass_all else [k for k in reward.columns if k in row]
        samples.append({k: row[k] for k in keys})
    texts = [completion_text(row["completion"]) for row in rows]
    if isinstance(reward, ReferenceReward) and rows:
        _probe(reward, [*texts[:PROBE_ROWS], ""], [*samples[:PROBE_ROWS], samples[0]], name)
    results = scored.score(texts, samples)
    for number, result in enumerate(results, start=1):
        if result.problem is not None:
            print(f"{name}:{number}: {result.problem}", file=sys.stderr)
    return [r.value for r in results]


#: Rows a reference scores as one batch (with an empty completion) first, so a broken contract
#: is an error rather than a column of zeros.
PROBE_ROWS = 2


def _probe(reward: Any, texts: list[str], samples: list[dict[str, Any]], name: str) -> None:
    from vlmr1_trainer.rewards.reference import RewardContractError, probe

    try:
        probe(reward, texts, samples)
    except RewardContractError as exc:
        raise InputError(f"{name}: the first lines and an empty completion as one batch: {exc}") from None
    except Exception:  # scored (and reported) row by row
        return


def add_paths(paths: Iterable[str]) -> None:
    """Folders of reward code first on the import path (and so in every scoring worker's)."""
    for path in reversed(list(paths)):
        folder = str(Path(path).resolve())
        if folder not in sys.path:
            sys.path.insert(0, folder)


def list_rewards(args: argparse.Namespace) -> int:
    import inspect

    from vlmr1_trainer import rewards

    for name in rewards.available():
        cls = rewards.reward_class(name)
        params = [
            f"{p.name}={p.default!r}" for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"
        ]
        _describe(name, cls.value_range, (cls.__doc__ or "").strip().splitlines()[0], params, cls.cpu_bound)
    add_paths(args.path)
    for reference in args.reward:
        try:
            reward = rewards.build(reference)
        except (LookupError, ValueError, TypeError) as exc:
            print(f"vlmr1 rewards list: {exc.args[0] if exc.args else exc}", file=sys.stderr)
            return EXIT_USAGE
        doc = (getattr(reward, "func", reward).__doc__ or "(no docstring)").strip().splitlines()[0]
        _describe(reference, reward.value_range, doc, [f"columns: {', '.join(reward.columns)}"], reward.cpu_bound)
    return 0


def _describe(name: str, value_range: tuple[float, float], summary: str, notes: list[str], cpu_bound: bool) -> None:
    low, high = value_range
    print(f"{name:<16} [{low:g}, {high:g}]  {summary}")
    if notes:
        print(f"{'':<16} {'params: ' if '=' in notes[0] else ''}{', '.join(notes)}")
    if cpu_bound:
        print(f"{'':<16} scored in the worker pool (cpu_bound)")


def score(args: argparse.Namespace) -> int:
    from vlmr1_trainer import rewards
    from vlmr1_trainer.rewards.pool import WorkerPool, default_workers
    from vlmr1_trainer.rewards.scoring import ScoredReward

    add_paths(args.path)
    try:
        params = parse_params(args.param)
        reward = rewards.build(args.reward, **params)
    except (LookupError, ValueError, TypeError) as exc:
        print(f"vlmr1 rewards score: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.input == "-":
            rows = read_rows(sys.stdin, "<stdin>")
        else:
            with Path(args.input).open(encoding="utf-8") as stream:
                rows = read_rows(stream, args.input)
        pool = WorkerPool({0: (args.reward, params)}, args.workers or default_workers(1)) if reward.cpu_bound else None
        try:
            scores = score_rows(ScoredReward(reward, args.timeout, pool), rows, args.input)
        finally:
            if pool is not None:
                pool.close()
    except (OSError, InputError, UnicodeDecodeError) as exc:
        print(f"vlmr1 rewards score: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out = sys.stdout
    for value in scores:
        out.write(json.dumps({"score": value}) + "\n")
    return 0
