"""Engine command lines: a VLMService spec -> the argv and environment of its engine.

Each engine module has a pure ``build(spec, model_path, port, served_name) -> Argv`` and a
table of the ``engine.args`` options it knows (:class:`Option`). ``engine.args`` keys are
checked against that table: an unknown key is an error that lists the known ones, so a
typo fails at start-up instead of being passed to the engine (or silently dropped).
``engine.extraArgs`` are appended verbatim after everything else, unchecked: the escape
hatch for options vlmr1 does not know yet.

Booleans follow each engine's own convention (:attr:`Option.negatable` and
:attr:`Option.style`): vLLM's flags are ``argparse.BooleanOptionalAction`` (``true`` ->
``--flag``, ``false`` -> ``--no-flag``); xllm's are gflags (``--flag=true`` /
``--flag=false``, both explicit, because several default to true); the transformers
dev server has plain switches (``true`` -> ``--flag``, ``false`` -> omitted).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from vlmr1_core.api.vlmservice import Engine, VLMServiceSpec

__all__ = [
    "ENGINES",
    "Argv",
    "EngineArgError",
    "Option",
    "OptionType",
    "build_argv",
    "known_options",
    "render_options",
]

ArgValue = str | int | float | bool
OptionType = Literal["int", "float", "str", "bool", "json"]


class EngineArgError(ValueError):
    """An ``engine.args`` entry the engine does not know, or of the wrong type."""


@dataclass(frozen=True)
class Option:
    """One ``engine.args`` option an engine knows."""

    flag: str
    """The engine's flag, with its dashes: ``--max-num-seqs``, ``--block_size``."""
    type: OptionType
    """Value type; ints are accepted where floats are expected, nothing else is converted."""
    doc: str
    """What it does (shown in the error that lists the known options)."""
    negatable: bool = False
    """For bools: ``false`` renders as ``--no-<flag>`` (vLLM's BooleanOptionalAction)."""


@dataclass(frozen=True)
class Argv:
    """What to execute: the argv and the environment variables to add to the inherited ones."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """Spec fields the engine has no flag for (logged at start-up, never silently dropped)."""

    def to_json(self) -> str:
        """The ``--dry-run`` output."""
        return json.dumps({"argv": self.argv, "env": self.env, "notes": self.notes}, indent=2)


#: How an engine renders ``--flag value``: vLLM and the dev server use two words, xllm's
#: gflags one word ``--flag=value`` (gflags would take a following ``false`` as a positional).
FlagStyle = Literal["separate", "equals"]


def _check_type(engine: str, key: str, option: Option, value: ArgValue) -> None:
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "json": isinstance(value, str),
    }[option.type]
    if not ok:
        raise EngineArgError(
            f"engine.args.{key} for {engine} must be a {option.type}, got {type(value).__name__} {value!r}"
        )
    if option.type == "json":
        try:
            json.loads(str(value))
        except ValueError as exc:
            raise EngineArgError(f"engine.args.{key} for {engine} must be a JSON string: {exc}") from exc


def _format(value: ArgValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def describe_options(options: Mapping[str, Option]) -> str:
    """The known options, one per line, for error messages."""
    return "\n".join(f"  {key} ({opt.type}): {opt.doc}" for key, opt in sorted(options.items()))


def render_options(
    engine: str,
    args: Mapping[str, ArgValue],
    options: Mapping[str, Option],
    *,
    style: FlagStyle,
    reserved: Mapping[str, str] | None = None,
) -> list[str]:
    """Check ``engine.args`` against ``options`` and render them in the order given.

    ``reserved`` maps option names that have a spec field of their own to that field, so
    ``tensor-parallel-size`` in args points at ``engine.tensorParallelSize`` instead of
    being set twice with two values.
    """
    out: list[str] = []
    for key, value in args.items():
        if reserved and key in reserved:
            raise EngineArgError(f"engine.args.{key}: set {reserved[key]} instead (it is a field of the spec)")
        option = options.get(key)
        if option is None:
            raise EngineArgError(
                f"engine.args.{key} is not an option vlmr1 knows for {engine}; pass it through engine.extraArgs "
                f"(verbatim, unchecked) or use one of:\n{describe_options(options)}"
            )
        _check_type(engine, key, option, value)
        if option.type == "bool" and style == "separate":
            if value:
                out.append(option.flag)
            elif option.negatable:
                out.append("--no-" + option.flag.removeprefix("--"))
            continue
        if style == "equals":
            out.append(f"{option.flag}={_format(value)}")
        else:
            out += [option.flag, _format(value)]
    return out


Builder = Callable[..., Argv]


def _builders() -> dict[str, tuple[Builder, Mapping[str, Option]]]:
    from vlmr1_serving.engines import transformers, vllm, xllm

    return {
        "vllm": (vllm.build_vllm, vllm.OPTIONS),
        "vllm-ascend": (vllm.build_vllm_ascend, vllm.OPTIONS),
        "xllm": (xllm.build, xllm.OPTIONS),
        "transformers": (transformers.build, transformers.OPTIONS),
    }


ENGINES: tuple[str, ...] = ("vllm", "vllm-ascend", "xllm", "transformers")


def known_options(engine: Engine | str) -> Mapping[str, Option]:
    """The ``engine.args`` table of an engine."""
    return _builders()[engine][1]


def build_argv(spec: VLMServiceSpec, model_path: str, port: int, served_name: str, *, host: str = "0.0.0.0") -> Argv:
    """The engine command line for a spec whose checkpoint is at ``model_path`` (verified).

    ``host`` is the HTTP bind address (0.0.0.0 in pods, 127.0.0.1 in tests); xllm has no
    such flag (its ``--host`` is the device RPC address) and always listens on all.
    """
    builder, _ = _builders()[spec.engine.name]
    return builder(spec, model_path, port, served_name, host=host)
