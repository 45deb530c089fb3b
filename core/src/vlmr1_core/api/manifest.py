"""Load GRPOJob / VLMService YAML files into the models, with errors that name file, line and field.

Used by every command that reads a manifest (`vlmr1 validate`, `vlmr1 run`, `vlmr1 promote`),
so a typo gets the same answer everywhere:

    examples/bad.yaml:14: spec.grpo.numGenerations: Input should be greater than or equal to 2
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from vlmr1_core.api import GROUP_VERSION, KINDS, GRPOJob, VLMService
from vlmr1_core.errors import UserError
from vlmr1_core.reward_config import KNOWN_REWARDS, reward_name_problem

Manifest = GRPOJob | VLMService
Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest."""

    path: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class ManifestError(UserError, ValueError):
    """A manifest that cannot be used; str() lists every problem, one per line, each with its file."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems), file=problems[0].path if problems else None)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Document:
    """One YAML document of a file, with its node tree for line lookups."""

    path: str
    index: int
    data: Any
    node: yaml.Node

    def line_of(self, loc: Loc) -> int | None:
        """1-based line of the deepest node along `loc` that exists in the file."""
        node: yaml.Node = self.node
        line = node.start_mark.line + 1
        for part in loc:
            child = _child(node, part)
            if child is None:
                break
            key_node, node = child
            line = (key_node or node).start_mark.line + 1
        return line


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node | None, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == part:
                return key, value
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return None, node.value[part]
    return None


def load_documents(path: str | Path) -> list[Document]:
    """Every non-empty YAML document in a file; YAML syntax errors and duplicate keys are errors."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError([Problem(name, None, "", f"cannot read: {exc.strerror or exc}")]) from exc
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        datas = list(yaml.safe_load_all(text))
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ManifestError([Problem(name, line, "", f"invalid YAML: {exc.problem}")]) from exc
    docs = [Document(name, i, data, node) for i, (node, data) in enumerate(zip(nodes, datas, strict=True))]
    docs = [d for d in docs if d.data is not None]
    duplicates = [
        Problem(name, line, field, "duplicate key (YAML keeps only the last)")
        for d in docs
        for line, field in _duplicate_keys(d.node, ())
    ]
    if duplicates:
        raise ManifestError(duplicates)
    return docs


def _duplicate_keys(node: yaml.Node, loc: Loc) -> Iterator[tuple[int, str]]:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.value in seen:
                yield key.start_mark.line + 1, _dotted((*loc, key.value))
            seen.add(key.value)
            yield from _duplicate_keys(value, (*loc, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*loc, i))


def parse_document(doc: Document, known_rewards: Collection[str] | None = KNOWN_REWARDS) -> Manifest:
    """Validate one document against the model its `kind` names; a GRPOJob's built-in reward
    names against ``known_rewards`` too (None: not checked)."""
    data = doc.data
    if not isinstance(data, dict):
        raise ManifestError([Problem(doc.path, doc.line_of(()), "", "expected a mapping (a Kubernetes object)")])
    kind = data.get("kind")
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ManifestError(
            [Problem(doc.path, doc.line_of(("kind",)), "kind", f"expected one of {', '.join(KINDS)}, got {kind!r}")]
        )
    if data.get("apiVersion") != GROUP_VERSION:
        raise ManifestError(
            [
                Problem(
                    doc.path,
                    doc.line_of(("apiVersion",)),
                    "apiVersion",
                    f"expected {GROUP_VERSION}, got {data.get('apiVersion')!r}",
                )
            ]
        )
    try:
        obj = model.model_validate(data)
    except ValidationError as exc:
        problems: dict[str, Problem] = {}
        for err in exc.errors():
            problem = _problem(doc, model, err)
            # A union (e.g. a quantity: string or integer) fails once per branch; one is enough.
            problems.setdefault(problem.field, problem)
        raise ManifestError(list(problems.values())) from exc
    if isinstance(obj, GRPOJob) and known_rewards is not None:
        # Not a model rule: the names a trainer knows depend on its image (custom rewards), so
        # the API server cannot check them; the caller says which names it knows. Built-in names
        # only: a MODULE:ATTRIBUTE reference is checked by importing it, a remote reward's name is
        # a label.
        unknown = []
        for i, reward in enumerate(obj.spec.rewards):
            why = reward_name_problem(reward.name, known_rewards) if reward.kind == "builtin" else None
            if why is not None:
                loc: Loc = ("spec", "rewards", i, "name")
                unknown.append(Problem(doc.path, doc.line_of(loc), _dotted(loc), why))
        if unknown:
            raise ManifestError(unknown)
    return obj


def load_manifests(path: str | Path, known_rewards: Collection[str] | None = KNOWN_REWARDS) -> list[Manifest]:
    """Every GRPOJob and VLMService in a file, or a ManifestError listing all problems (reward
    names are checked against ``known_rewards``; None: not checked)."""
    problems: list[Problem] = []
    out: list[Manifest] = []
    for doc in load_documents(path):
        try:
            out.append(parse_document(doc, known_rewards))
        except ManifestError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ManifestError(problems)
    return out


def load_manifest(
    path: str | Path, kind: type[Manifest] | None = None, known_rewards: Collection[str] | None = KNOWN_REWARDS
) -> Manifest:
    """The single object in a file (of `kind`, when given)."""
    objs = load_manifests(path, known_rewards)
    if len(objs) != 1:
        raise ManifestError([Problem(str(path), None, "", f"expected exactly one object, found {len(objs)}")])
    if kind is not None and not isinstance(objs[0], kind):
        raise ManifestError([Problem(str(path), None, "kind", f"expected a {kind.__name__}, got {objs[0].kind}")])
    return objs[0]


def _problem(doc: Document, model: type[BaseModel], err: Any) -> Problem:
    loc: Loc = tuple(part for part in err["loc"] if not _is_branch_tag(part))
    ctx = err.get("ctx") or {}
    field_path = ctx.get("field_path", "")
    if field_path:
        loc = (*loc, *field_path.strip(".").split("."))
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = _unknown_field_message(model, loc)
    elif err["type"] == "missing":
        message = "required field is missing"
    elif _is_scalar(err.get("input")) and repr(err["input"]) not in message:
        message = f"{message} (got {err['input']!r})"
    return Problem(doc.path, doc.line_of(loc), _dotted(loc), message)


def _is_branch_tag(part: str | int) -> bool:
    """pydantic names union branches in error locations (`str`, `function-after[...]`)."""
    return isinstance(part, str) and (part in ("str", "int", "float", "bool") or "[" in part)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and len(repr(value)) < 80


def _unknown_field_message(root: type[BaseModel], loc: Loc) -> str:
    parent = _model_at(root, loc[:-1])
    name = str(loc[-1])
    if parent is None:
        return f"unknown field {name!r}"
    known = [f.alias or n for n, f in parent.model_fields.items()]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown field {name!r}{hint} (known fields: {', '.join(known)})"


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the object at `loc`, if that is a model."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, str) and isinstance(current, type) and issubclass(current, BaseModel):
            field = next((f for n, f in current.model_fields.items() if part in (n, f.alias)), None)
            current = field.annotation if field else None
        else:
            current = _element_type(current)
        if current is None:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """Strip Optional from an annotation (X | None -> X)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return annotation


def _element_type(annotation: Any) -> Any:
    """The item type of list[X] or value type of dict[K, X]."""
    args = typing.get_args(_unwrap(annotation))
    return _unwrap(args[-1]) if args else None


def line_of_field(path: str | Path, field: str, index: int = 0) -> int | None:
    """The line of ``field`` (``spec.datasets[0].jsonl``) in the ``index``-th document of a
    file, or of its deepest parent there; None when the file cannot be read as YAML."""
    try:
        docs = load_documents(path)
    except ManifestError:
        return None
    return docs[index].line_of(parse_field(field)) if index < len(docs) else None


def parse_field(field: str) -> Loc:
    """A dotted field path as a location.

    >>> parse_field("spec.datasets[0].jsonl")
    ('spec', 'datasets', 0, 'jsonl')
    """
    return tuple(int(part) if part.isdigit() else part for part in re.findall(r"[^.\[\]]+", field))


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
