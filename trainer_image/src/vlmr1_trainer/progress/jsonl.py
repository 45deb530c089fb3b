"""Append-only JSON lines that a crash, a NaN or a full disk cannot turn into a failed run.

Lines are strict JSON (``NaN``/``inf`` become ``null``) so that every JSON parser
reads them; each line is written and flushed in
one ``open``/``write``/``close`` so that ``tail -f`` sees whole lines and a rotated or
deleted file is simply recreated. An ``OSError`` is logged once per writer and then
ignored: losing progress lines must never end a multi-day training run.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["JsonlWriter", "json_line", "json_safe"]

log = logging.getLogger(__name__)


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as None and numpy/torch scalars as Python numbers.

    >>> json_safe({"a": float("nan"), "b": [1.5, float("inf")], "c": (1, "x")})
    {'a': None, 'b': [1.5, None], 'c': [1, 'x']}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item):  # numpy / torch scalars (a 0-d tensor too)
        try:
            return json_safe(item())
        except (TypeError, ValueError, RuntimeError):  # a tensor with several elements
            return str(value)
    if isinstance(value, Path):
        return str(value)
    return value


def json_line(record: Mapping[str, Any]) -> str:
    """One strict-JSON line (with its newline) for ``record``; unknown objects become their ``str``.

    >>> json_line({"step": 1, "kl": float("nan")})
    '{"step": 1, "kl": null}\\n'
    """
    return json.dumps(json_safe(record), allow_nan=False, default=str, ensure_ascii=False) + "\n"


class JsonlWriter:
    """Appends records as JSON lines to ``path``; never raises on I/O errors (warns once).

    Holds no open file, so instances pickle (reward wrappers travel to worker processes).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._warned = False

    def write(self, record: Mapping[str, Any]) -> bool:
        """Append one line and flush it; False when it could not be written."""
        return self.write_many([record])

    def write_many(self, records: list[Mapping[str, Any]]) -> bool:
        """Append several lines in one write; False when they could not be written."""
        if not records:
            return True
        text = "".join(json_line(r) for r in records)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot write %s (further errors on this file are not reported): %s", self.path, exc)
            return False
        return True
