"""Model uris as ``from_pretrained`` arguments (every uri form of :mod:`vlmr1_core.uri`).

``hf://org/name`` and bare hub ids are handed to ``from_pretrained`` unchanged (the hub client
caches under ``HF_HOME``); ``pvc://`` and ``s3://`` become local folders through
:func:`vlmr1_core.uri.resolve_local_path`; ``builtin://name`` is built offline and cached
(:mod:`vlmr1_trainer.vlm.builtin`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vlmr1_core.uri import HUB_ID, Downloader, parse_uri, resolve_local_path

__all__ = ["ModelSource", "resolve_model"]

SourceKind = Literal["local", "pvc", "s3", "hub", "builtin"]


@dataclass(frozen=True)
class ModelSource:
    """What ``from_pretrained`` is called with for a model uri."""

    uri: str
    """The uri as the user wrote it."""
    pretrained: str
    """The first argument of ``from_pretrained``: a local folder or a hub id."""
    kind: SourceKind
    """Which uri form it was."""
    revision: str | None = None
    """Hub revision; only for hub ids (local folders have none)."""

    @property
    def is_local(self) -> bool:
        """True when ``pretrained`` is a folder on this machine."""
        return self.kind != "hub"


def resolve_model(
    uri: str,
    revision: str | None = None,
    *,
    downloader: Downloader | None = None,
    cache_root: Path | None = None,
    builtin_seed: int | None = None,
) -> ModelSource:
    """Turn a model uri into what ``from_pretrained`` needs (see the module docstring).

    A scheme-less uri is a local path when it exists or looks like one (absolute, ``./``,
    ``../``, ``~``); otherwise an ``org/name`` shaped string is a hub id.
    """
    parsed = parse_uri(uri)
    if parsed.scheme == "hf":
        return ModelSource(uri=uri, pretrained=uri.removeprefix("hf://"), kind="hub", revision=revision)
    if parsed.scheme == "builtin":
        from vlmr1_trainer.vlm.builtin import ensure_builtin

        path = ensure_builtin(parsed.authority, cache_root=cache_root, seed=builtin_seed)
        return ModelSource(uri=uri, pretrained=str(path), kind="builtin")
    if parsed.scheme in ("pvc", "s3"):
        path = resolve_local_path(uri, downloader=downloader, cache_root=cache_root)
        return ModelSource(uri=uri, pretrained=str(path), kind="pvc" if parsed.scheme == "pvc" else "s3")
    path = Path(uri).expanduser()
    looks_like_path = uri.startswith(("/", "./", "../", "~")) or uri in (".", "..")
    if path.exists() or looks_like_path or not HUB_ID.match(uri):
        return ModelSource(uri=uri, pretrained=str(path), kind="local")
    return ModelSource(uri=uri, pretrained=uri, kind="hub", revision=revision)
