"""Read the mounted VLMService spec: the operator's ConfigMap holds the spec alone
(``/etc/vlmr1/vlmservice.yaml``); a whole VLMService object (``kubectl get -o yaml``, an
example file) works too. YAML or JSON (JSON is YAML).

The serving container cannot resolve ``model.fromJob`` (it has no API access): the
operator writes the resolved ``uri`` and ``digest`` into the spec it mounts. For local
runs of a fromJob example, ``--model-uri``/``--model-digest`` (or ``VLMR1_MODEL_URI``/
``VLMR1_MODEL_DIGEST``) supply them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from vlmr1_core.api.vlmservice import VLMService, VLMServiceSpec

__all__ = ["ServedSpec", "SpecError", "load_spec", "parse_spec"]

NAME_ENV = "VLMR1_SERVICE_NAME"
URI_ENV = "VLMR1_MODEL_URI"
DIGEST_ENV = "VLMR1_MODEL_DIGEST"


class SpecError(ValueError):
    """A spec file that cannot be served: unreadable, invalid, or with an unresolved model."""


@dataclass(frozen=True)
class ServedSpec:
    """A validated spec with the model pinned and the name clients use."""

    spec: VLMServiceSpec
    served_name: str
    """``model.servedModelName``, else the VLMService name."""
    uri: str
    digest: str


def _validate(data: Any, source: str) -> tuple[VLMServiceSpec, str | None]:
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a VLMService object or its spec (a mapping), got {type(data).__name__}")
    try:
        if data.get("kind") == "VLMService" or "apiVersion" in data:
            obj = VLMService.model_validate(data)
            return obj.spec, obj.metadata.name
        return VLMServiceSpec.model_validate(data), None
    except ValidationError as exc:
        raise SpecError(f"{source}: not a valid VLMService spec:\n{exc}") from exc


def parse_spec(
    data: Any,
    *,
    source: str = "spec",
    name: str | None = None,
    model_uri: str | None = None,
    model_digest: str | None = None,
) -> ServedSpec:
    """Validate ``data`` and pin its model (see the module docstring for the overrides)."""
    spec, object_name = _validate(data, source)
    if (model_uri is None) != (model_digest is None):
        raise SpecError("give both a model uri and a model digest, or neither")
    if model_uri is not None:
        # Re-validate through the model so the uri and digest patterns are checked too.
        model = spec.model.model_dump(by_alias=True, exclude_none=True, exclude={"from_job"})
        model.update(uri=model_uri, digest=model_digest)
        try:
            spec = spec.model_copy(update={"model": type(spec.model).model_validate(model)})
        except ValidationError as exc:
            raise SpecError(f"model uri/digest override is invalid:\n{exc}") from exc
    uri, digest = spec.model.uri, spec.model.digest
    if uri is None or digest is None:
        job = spec.model.from_job
        ref = f" (fromJob {job.name}/{job.checkpoint})" if job else ""
        raise SpecError(
            f"{source}: model{ref} is not resolved to a uri and digest; the operator resolves fromJob before "
            f"mounting the spec, locally pass --model-uri and --model-digest"
        )
    served = spec.model.served_model_name or name or object_name
    if not served:
        raise SpecError(
            f"{source}: no model name for clients: set model.servedModelName, mount the whole VLMService, "
            f"or set {NAME_ENV} (or --name)"
        )
    return ServedSpec(spec=spec, served_name=served, uri=uri, digest=digest)


def load_spec(
    path: Path | str,
    *,
    name: str | None = None,
    model_uri: str | None = None,
    model_digest: str | None = None,
    environ: dict[str, str] | None = None,
) -> ServedSpec:
    """Read and validate a spec file; arguments win over ``VLMR1_*`` environment variables."""
    env = dict(os.environ) if environ is None else environ
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(f"cannot read the spec {file}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"{file} is not YAML or JSON: {exc}") from exc
    return parse_spec(
        data,
        source=str(file),
        name=name or env.get(NAME_ENV) or None,
        model_uri=model_uri or env.get(URI_ENV) or None,
        model_digest=model_digest or env.get(DIGEST_ENV) or None,
    )
