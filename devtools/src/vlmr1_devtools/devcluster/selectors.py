"""Label and field selectors, parsed the way the API server parses ``?labelSelector=`` and
``?fieldSelector=`` query parameters.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x,y)``, ``a`` (exists),
``!a`` (does not exist), comma-joined (AND). Field selectors: ``path=value``, ``path==value``,
``path!=value`` on any dotted path of the object (the real server allows only a per-kind list,
``metadata.name`` and ``metadata.namespace`` everywhere; accepting more is harmless here).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from vlmr1_devtools.devcluster.errors import bad_request

Matcher = Callable[[dict[str, Any]], bool]

_SET_TERM = re.compile(r"^\s*(\S+)\s+(in|notin)\s+\((.*)\)\s*$")
_KEY = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def _split_terms(selector: str) -> list[str]:
    """Split on commas outside parentheses (``a in (x,y),b`` has two terms)."""
    terms, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t.strip() for t in terms if t.strip()]


def _check_key(key: str, selector: str) -> str:
    if not _KEY.match(key):
        raise bad_request(f"unable to parse requirement: invalid label key {key!r} in selector {selector!r}")
    return key


def _label_term(term: str, selector: str) -> Matcher:
    if m := _SET_TERM.match(term):
        key, op = _check_key(m.group(1), selector), m.group(2)
        values = {v.strip() for v in m.group(3).split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    for op in ("!=", "==", "="):
        if op in term:
            key, value = (s.strip() for s in term.split(op, 1))
            _check_key(key, selector)
            if op == "!=":
                return lambda labels: labels.get(key) != value
            return lambda labels: labels.get(key) == value
    if term.startswith("!"):
        key = _check_key(term[1:].strip(), selector)
        return lambda labels: key not in labels
    key = _check_key(term, selector)
    return lambda labels: key in labels


def label_selector(selector: str | None) -> Matcher:
    """A predicate on an object's ``metadata.labels``; everything matches an empty selector."""
    if not selector:
        return lambda _obj: True
    terms = [_label_term(t, selector) for t in _split_terms(selector)]

    def match(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(term(labels) for term in terms)

    return match


def _field_value(obj: dict[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, dict):
            return ""
        node = node.get(part)
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def field_selector(selector: str | None) -> Matcher:
    """A predicate on dotted fields of the object (``metadata.name=x,status.phase!=Failed``)."""
    if not selector:
        return lambda _obj: True
    terms: list[tuple[str, bool, str]] = []  # (path, equal?, value)
    for term in _split_terms(selector):
        for op in ("!=", "==", "="):
            if op in term:
                path, value = (s.strip() for s in term.split(op, 1))
                terms.append((path, op != "!=", value))
                break
        else:
            raise bad_request(f"invalid field selector {selector!r}: {term!r} has no operator")
    return lambda obj: all((_field_value(obj, p) == v) == eq for p, eq, v in terms)
