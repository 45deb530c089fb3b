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

from vlmr1_core.uri import HUB_ID, Downloader, StorageError, parse_uri, resolve_local_path

__all__ = ["ModelSource", "ModelUnavailableError", "resolve_model"]

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


class ModelUnavailableError(StorageError):
    """A model whose files ``from_pretrained`` cannot get: a hub that cannot be reached or does
    not know the name, a gated model without a token, a folder that holds no model."""

    @classmethod
    def from_load(cls, source: ModelSource, exc: OSError) -> ModelUnavailableError:
        """The error for ``exc``, which transformers raised loading ``source``."""
        # transformers' message is several lines of advice; the first says what went wrong.
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if source.kind == "hub":
            revision = f" at revision {source.revision}" if source.revision else ""
            fix = (
                f"check the model id{revision}; a hub out of reach needs network access or the model in the "
                "Hugging Face cache (HF_HOME; HF_HUB_OFFLINE=1 reads only the cache); a gated model needs HF_TOKEN"
            )
            return cls(f"cannot load model {source.uri}: {detail}", fix=fix)
        where = source.uri if source.pretrained == source.uri else f"{source.uri} ({source.pretrained})"
        fix = "point the uri at a folder holding a transformers model: config.json, the weights, the processor files"
        return cls(f"cannot load model {where}: {detail}", fix=fix)


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
