"""The base of every API model: camelCase YAML, strict fields, cross-field rules.

This module imports nothing but pydantic, because the trainer config (and so the
operator's CRDs) are built on it and the operator image installs no trainer extras.

A cross-field rule is written once, as a method decorated with :func:`cel_rule`.
The decorator carries the CEL expression the Kubernetes API server evaluates
(``x-kubernetes-validations`` in the generated CRD, so ``kubectl apply`` rejects a
bad spec) and the method is the same rule evaluated in Python (so ``vlmr1 run``
and the operator reject it too, with the same message). Tests apply bad manifests
to a real API server and load them locally, and compare.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, model_validator
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

__all__ = ["ApiModel", "CelRule", "cel_rule", "defaulted"]

_F = TypeVar("_F", bound=Callable[..., bool])


@dataclass(frozen=True)
class CelRule:
    """One ``x-kubernetes-validations`` entry and its Python twin."""

    rule: str
    """CEL expression over ``self`` (this object, after server-side defaulting)."""
    message: str
    """What is wrong and how to fix it; shown by kubectl and by the local loader."""
    field_path: str | None = None
    """JSONPath (relative to this object, e.g. ``.lora``) of the field the error names."""

    def as_schema(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out


def cel_rule(rule: str, message: str, field_path: str | None = None) -> Callable[[_F], _F]:
    """Mark a ``(self) -> bool`` method as a cross-field rule with its CEL twin."""

    def mark(check: _F) -> _F:
        check.__cel_rule__ = CelRule(rule, message, field_path)  # type: ignore[attr-defined]
        return check

    return mark


class ApiModel(BaseModel):
    """Base of every model that is part of the API (CRD specs and the trainer config)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )

    __cel_checks__: ClassVar[tuple[tuple[CelRule, Callable[[Any], bool]], ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        checks: dict[str, tuple[CelRule, Callable[[Any], bool]]] = {}
        for klass in reversed(cls.__mro__):
            for name, attr in vars(klass).items():
                rule = getattr(attr, "__cel_rule__", None)
                if isinstance(rule, CelRule):
                    checks[name] = (rule, attr)
        cls.__cel_checks__ = tuple(checks.values())

    @model_validator(mode="after")
    def _check_cel_rules(self) -> Self:
        for rule, check in type(self).__cel_checks__:
            if not check(self):
                raise PydanticCustomError(
                    "cross_field", "{message}", {"message": rule.message, "field_path": rule.field_path or ""}
                )
        return self

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        if cls.__cel_checks__:
            target = handler.resolve_ref_schema(schema)
            target["x-kubernetes-validations"] = [rule.as_schema() for rule, _ in cls.__cel_checks__]
        return schema

    def to_yaml_dict(self) -> dict[str, Any]:
        """The camelCase form a user writes in YAML (unset optionals left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def defaulted(model: type[ApiModel]) -> Any:
    """Field default for a nested section whose fields all have defaults.

    The CRD carries the section's defaulted form (not ``{}``): the API server
    validates a default against the section's CEL rules without defaulting inside
    it, and fills the section in for objects that leave it out, so rules one level
    up can rely on it being there.
    """
    return Field(default_factory=model, json_schema_extra={"default": model().to_yaml_dict()})


class SecretKeyRef(ApiModel):
    """A key of a Secret in the object's namespace (read by the pod, never by the operator)."""

    name: str = Field(min_length=1, max_length=253)
    """Secret name."""

    key: str = Field(min_length=1, max_length=253)
    """Key within the Secret."""
