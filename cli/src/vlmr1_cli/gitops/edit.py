"""Pin ``spec.model`` of a VLMService manifest to a checkpoint by editing the text, not re-dumping it.

A promotion is reviewed as a diff, so it must change the model's uri and digest and nothing
else: re-serialising the YAML would drop comments, reorder keys and requote strings. Instead
the file is composed with PyYAML (nodes carry their character offsets), and only the uri and
digest values are replaced in place, keeping their quoting style; a ``fromJob`` entry is
replaced by ``uri`` and ``digest`` entries at the same indentation (block) or in the same braces
(flow). The new text is re-parsed, checked to differ from the old one in ``spec.model`` only,
and validated as a VLMService before anyone writes it.
"""

from __future__ import annotations

import copy
import itertools
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vlmr1_cli.gitops import PromoteError

__all__ = ["EditResult", "Pin", "Service", "find_service", "pin_model", "write_atomically"]

GROUP_PREFIX = "vlmr1.io/"
_FROM_JOB = "fromJob"


@dataclass(frozen=True)
class Pin:
    """What ``spec.model`` should pin."""

    uri: str
    digest: str


@dataclass(frozen=True)
class Service:
    """The VLMService document of a file."""

    index: int
    """Position among the file's YAML documents."""
    name: str
    namespace: str | None
    node: yaml.MappingNode
    data: dict[str, Any]

    @property
    def ref(self) -> str:
        """``namespace/name``, or the name when the manifest names no namespace."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    @property
    def model(self) -> dict[str, Any]:
        """``spec.model`` as data (empty when absent)."""
        model = (self.data.get("spec") or {}).get("model")
        return model if isinstance(model, dict) else {}

    def pins(self, pin: Pin) -> bool:
        """Whether ``spec.model`` already pins exactly this uri and digest."""
        model = self.model
        return model.get("uri") == pin.uri and model.get("digest") == pin.digest and _FROM_JOB not in model

    def describe_model(self) -> str:
        """What the model field names now, for messages and the commit."""
        model = self.model
        from_job = model.get(_FROM_JOB)
        if isinstance(from_job, dict):
            return f"fromJob {from_job.get('name')} ({from_job.get('checkpoint', 'best')})"
        return f"{model.get('uri')} ({model.get('digest')})"


@dataclass(frozen=True)
class EditResult:
    """The outcome of pinning: the new text and the service it changed."""

    text: str
    service: Service
    """The service as it was before the edit."""
    changed: bool


def _parse(text: str, path: str) -> tuple[list[yaml.Node], list[Any]]:
    try:
        return list(yaml.compose_all(text, Loader=yaml.SafeLoader)), list(yaml.safe_load_all(text))
    except yaml.MarkedYAMLError as exc:
        line = f":{exc.problem_mark.line + 1}" if exc.problem_mark else ""
        raise PromoteError(f"{path}{line}: invalid YAML: {exc.problem}; fix the file first") from exc


def _get(node: yaml.Node, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                return key_node, value
    return None


def _kind_of(data: Any) -> str:
    if not isinstance(data, dict):
        return "<not an object>"
    kind, api = data.get("kind"), data.get("apiVersion")
    return f"{kind} ({api})" if kind == "VLMService" and api else str(kind or "<no kind>")


def find_service(text: str, path: str, name: str | None = None) -> Service:
    """The VLMService of a manifest text (the one named ``name`` when the file holds several)."""
    nodes, datas = _parse(text, path)
    found: list[Service] = []
    kinds: list[str] = []
    for index, (node, data) in enumerate(zip(nodes, datas, strict=True)):
        if data is None:
            continue
        kinds.append(_kind_of(data))
        if not (isinstance(data, dict) and isinstance(node, yaml.MappingNode)):
            continue
        api = data.get("apiVersion")
        if data.get("kind") != "VLMService" or not (isinstance(api, str) and api.startswith(GROUP_PREFIX)):
            continue
        raw_meta = data.get("metadata")
        meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        namespace = meta.get("namespace")
        found.append(Service(index, str(meta.get("name", "")), str(namespace) if namespace else None, node, data))
    if not found:
        raise PromoteError(
            f"{path} holds no VLMService of {GROUP_PREFIX}* (found kinds: {', '.join(kinds) or 'none'}); "
            "pass the VLMService manifest with --service"
        )
    if name is not None:
        named = [s for s in found if s.name == name]
        if not named:
            raise PromoteError(f"{path} holds no VLMService named {name!r} (found: {', '.join(s.name for s in found)})")
        found = named
    if len(found) > 1:
        raise PromoteError(
            f"{path} holds {len(found)} VLMServices ({', '.join(s.name for s in found)}); pick one with --service-name"
        )
    return found[0]


def pin_model(text: str, path: str, pin: Pin, name: str | None = None) -> EditResult:
    """``text`` with the VLMService's ``spec.model`` pinned to ``pin``, validated; nothing else changes."""
    service = find_service(text, path, name)
    if service.pins(pin):
        return EditResult(text, service, changed=False)
    model = _model_node(service, text, path)
    new_text = _apply(text, _plan(text, path, model, pin))
    _check(text, new_text, path, service, pin)
    return EditResult(new_text, service, changed=True)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _model_node(service: Service, text: str, path: str) -> yaml.MappingNode:
    spec = _get(service.node, "spec")
    model = _get(spec[1], "model") if spec else None
    if model is None or not isinstance(model[1], yaml.MappingNode):
        where = f"{path}:{_line(model[0] if model else service.node)}"
        raise PromoteError(f"{where}: VLMService {service.name} has no spec.model mapping to pin; add one")
    key, node = model[0], model[1]
    assert isinstance(node, yaml.MappingNode)
    if node.start_mark.index < key.end_mark.index:
        raise PromoteError(f"{path}:{_line(key)}: spec.model is a YAML alias; write it out to promote into it")
    seen: set[str] = set()
    for key_node, _ in node.value:
        if key_node.value in seen:
            raise PromoteError(f"{path}:{_line(key_node)}: spec.model.{key_node.value} is a duplicate key; remove one")
        seen.add(key_node.value)
    return node


Edit = tuple[int, int, str]
"""Replace ``text[start:end]`` with the string."""


def _plan(text: str, path: str, model: yaml.MappingNode, pin: Pin) -> list[Edit]:
    flow = bool(model.flow_style)
    wanted = {"uri": pin.uri, "digest": pin.digest}
    edits: list[Edit] = []
    missing: list[tuple[str, str]] = []
    for key, value in wanted.items():
        entry = _get(model, key)
        if entry is None:
            missing.append((key, value))
        else:
            edits.append(_replace_value(text, path, entry, value, flow))
    from_job = _get(model, _FROM_JOB)
    if from_job is not None:
        edits.append(_replace_entry(text, model, from_job, missing, flow))
    elif missing:
        anchor = _get(model, "uri") or (model.value[-1] if model.value else None)
        if anchor is None:  # model: {}
            start, end = model.start_mark.index, model.end_mark.index
            edits.append((start, end, "{" + ", ".join(f"{k}: {_render(v, None, True)}" for k, v in missing) + "}"))
        else:
            edits.append(_insert_after(text, model, anchor, missing, flow))
    return edits


def _apply(text: str, edits: list[Edit]) -> str:
    ordered = sorted(edits, key=lambda e: (e[0], e[1]))
    for (_, end, _), (start, _, _) in itertools.pairwise(ordered):
        assert end <= start, "overlapping edits"
    for start, end, new in reversed(ordered):
        text = text[:start] + new + text[end:]
    return text


def _replace_value(text: str, path: str, entry: tuple[yaml.Node, yaml.Node], value: str, flow: bool) -> Edit:
    key, node = entry
    if not isinstance(node, yaml.ScalarNode):
        raise PromoteError(f"{path}:{_line(key)}: spec.model.{key.value} is not a string; make it one")
    start, end = node.start_mark.index, _content_end(text, node)
    if text[start : start + 1] in ("&", "!"):
        raise PromoteError(
            f"{path}:{_line(key)}: spec.model.{key.value} carries a YAML anchor or tag; remove it to promote"
        )
    rendered = _render(value, node.style, flow)
    return start, end, (" " + rendered if start == end else rendered)  # `uri:` with no value


def _replace_entry(
    text: str, model: yaml.MappingNode, entry: tuple[yaml.Node, yaml.Node], new: list[tuple[str, str]], flow: bool
) -> Edit:
    key, value = entry
    end = _content_end(text, value)
    if flow:
        if new:
            return key.start_mark.index, end, ", ".join(f"{k}: {_render(v, None, True)}" for k, v in new)
        return _flow_delete(text, model, key.start_mark.index, end)
    start = _line_start(text, key.start_mark.index)
    return start, _line_end(text, end - 1), "".join(_block_line(text, key, k, v) for k, v in new)


def _insert_after(
    text: str, model: yaml.MappingNode, anchor: tuple[yaml.Node, yaml.Node], new: list[tuple[str, str]], flow: bool
) -> Edit:
    key, value = anchor
    end = _content_end(text, value)
    if flow:
        return end, end, "".join(f", {k}: {_render(v, None, True)}" for k, v in new)
    at = _line_end(text, end - 1)
    lines = "".join(_block_line(text, key, k, v) for k, v in new)
    if at == len(text) and not text.endswith("\n"):
        lines = _eol(text, end - 1) + lines.rstrip("\r\n")
    return at, at, lines


def _flow_delete(text: str, model: yaml.MappingNode, start: int, end: int) -> Edit:
    following = re.match(r"\s*,\s*", text[end:])
    if following:
        return start, end + following.end(), ""
    preceding = re.search(r",\s*$", text[model.start_mark.index : start])
    return (model.start_mark.index + preceding.start() if preceding else start), end, ""


def _block_line(text: str, sibling: yaml.Node, key: str, value: str) -> str:
    """``key: value`` at the indentation of ``sibling``, ending like sibling's line."""
    start = sibling.start_mark.index
    indent = text[_line_start(text, start) : start]
    if indent.strip():
        raise PromoteError(
            f"line {_line(sibling)}: spec.model's keys do not start their lines; write spec.model as a plain "
            "block mapping or a flow mapping {uri: ..., digest: ...} to promote into it"
        )
    return f"{indent}{key}: {_render(value, None, False)}{_eol(text, start)}"


def _content_end(text: str, node: yaml.Node) -> int:
    """Offset just after the node's last character (PyYAML's block nodes end at the next token)."""
    if isinstance(node, yaml.ScalarNode):
        end = int(node.end_mark.index)
        if node.style in ("|", ">"):
            end = len(text[:end].rstrip())
        return end
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and not node.flow_style and node.value:
        last = node.value[-1]
        return _content_end(text, last[1] if isinstance(last, tuple) else last)
    return int(node.end_mark.index)


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _line_end(text: str, index: int) -> int:
    """Offset just after the line break ending the line of ``index`` (or the end of the text)."""
    found = text.find("\n", index)
    return len(text) if found < 0 else found + 1


def _eol(text: str, index: int) -> str:
    """The line break of the line of ``index``; the file's usual one when that line has none."""
    found = text.find("\n", index)
    if found >= 0:
        return "\r\n" if found > 0 and text[found - 1] == "\r" else "\n"
    return "\r\n" if "\r\n" in text else "\n"


def _render(value: str, style: str | None, flow: bool) -> str:
    """The scalar in YAML: in its former quoting style when that can hold it, else double-quoted."""
    if style == "'" and value.isprintable():
        return "'" + value.replace("'", "''") + "'"
    if style != '"' and _plain_ok(value, flow):
        return value
    return _double_quoted(value)


#: Characters YAML may hold unescaped in a double-quoted scalar (printable, not a line break or tab).
_LITERAL = re.compile("[\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")


def _double_quoted(value: str) -> str:
    out = []
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif _LITERAL.fullmatch(char):
            out.append(char)
        elif ord(char) <= 0xFF:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def _plain_ok(value: str, flow: bool) -> bool:
    """Whether ``value`` reads back as the same string when written unquoted."""
    if not value or value != value.strip() or any(c in value for c in "\r\n#"):
        return False
    snippet = f"{{k: {value}}}" if flow else f"k: {value}\n"
    try:
        return bool(yaml.safe_load(snippet) == {"k": value})
    except yaml.YAMLError:
        return False


def _check(old: str, new: str, path: str, service: Service, pin: Pin) -> None:
    """The edit changed only spec.model, to the pin, and the result is a valid VLMService."""
    from vlmr1_core.api.manifest import Document, ManifestError, parse_document

    new_nodes, new_datas = _parse(new, f"{path} (after the edit)")
    expected = copy.deepcopy(_parse(old, path)[1])
    model = expected[service.index]["spec"]["model"]
    model.pop(_FROM_JOB, None)
    model.update(uri=pin.uri, digest=pin.digest)
    if new_datas != expected:
        raise PromoteError(
            f"{path}: the edit would change more than spec.model (a vlmr1 bug: please report it with the file); "
            "the file was not changed"
        )
    try:
        parse_document(Document(path, service.index, new_datas[service.index], new_nodes[service.index]))
    except ManifestError as exc:
        raise PromoteError(f"the promoted VLMService would not be valid; fix the manifest first:\n{exc}") from exc


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8, line breaks as given) in one rename, keeping its mode."""
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).chmod(mode)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
