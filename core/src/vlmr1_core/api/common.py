"""Types shared by the GRPOJob and VLMService APIs."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, StrictInt, StrictStr, WithJsonSchema

from vlmr1_core.apimodel import ApiModel, SecretKeyRef

API_GROUP = "vlmr1.io"
API_VERSION = "v1alpha1"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"

# Kubernetes' own resource.Quantity pattern (from its OpenAPI definitions).
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)

_quantity_re = re.compile(QUANTITY_PATTERN)


def _check_quantity(value: str | int) -> str | int:
    if isinstance(value, str) and not _quantity_re.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity; write e.g. 500m, 4, 16Gi")
    return value


Quantity = Annotated[
    StrictStr | StrictInt,
    AfterValidator(_check_quantity),
    WithJsonSchema({"x-kubernetes-int-or-string": True, "pattern": QUANTITY_PATTERN}),
]
"""A Kubernetes quantity such as 500m, 4 or 16Gi."""

LabelMap = dict[Annotated[str, Field(max_length=317)], Annotated[str, Field(max_length=63)]]

#: A DNS-1035 label: what a Service name must be.
DNS_LABEL_PATTERN = "^[a-z]([-a-z0-9]*[a-z0-9])?$"


def DnsLabel(max_length: int, why: str) -> Any:  # noqa: N802 - used as a type
    """An object name that must be a DNS-1035 label of at most `max_length` characters."""

    def check(name: str) -> str:
        if len(name) > max_length or not re.fullmatch(DNS_LABEL_PATTERN, name):
            raise ValueError(
                f"{name!r} is not a valid name: use at most {max_length} characters of a-z, 0-9 and '-', "
                f"starting with a letter ({why})"
            )
        return name

    return Annotated[
        str,
        Field(min_length=1, max_length=max_length, json_schema_extra={"pattern": DNS_LABEL_PATTERN}),
        AfterValidator(check),
    ]


class ObjectMeta(ApiModel):
    """The parts of Kubernetes object metadata a manifest file carries (the rest is kept as is)."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=253)
    """Object name."""

    namespace: str | None = None
    """Namespace; unset means the kubectl context's namespace."""

    uid: str | None = None
    """Set by the API server; children reference it in ownerReferences."""

    generation: int | None = None
    """Set by the API server; bumped on every spec change."""

    labels: LabelMap = Field(default_factory=dict)
    """Labels."""

    annotations: dict[str, str] = Field(default_factory=dict)
    """Annotations."""


class Toleration(ApiModel):
    """A Kubernetes pod toleration."""

    key: str | None = Field(default=None, max_length=317)
    """Taint key the toleration applies to; empty with operator Exists matches every key."""

    operator: Literal["Exists", "Equal"] = "Equal"
    """Exists (any value) or Equal (the value below)."""

    value: str | None = Field(default=None, max_length=63)
    """Taint value to match with operator Equal."""

    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; unset matches all effects."""

    toleration_seconds: int | None = Field(default=None, ge=0)
    """How long a NoExecute taint is tolerated before eviction; unset is forever."""


class SecretRef(ApiModel):
    """A whole Secret in the object's namespace, exposed to the pod as environment variables."""

    name: str = Field(min_length=1, max_length=253)
    """Secret name."""


class SecretsSpec(ApiModel):
    """Credentials, by reference only: the operator passes the references to the pods."""

    hub_token: SecretKeyRef | None = None
    """Hugging Face hub token (becomes HF_TOKEN) for gated or private models."""

    object_store: SecretRef | None = None
    """Secret with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and optionally AWS_ENDPOINT_URL,
    AWS_REGION) for s3:// uris, loaded with envFrom."""

    tracking: SecretRef | None = None
    """Secret with the experiment trackers' settings and credentials (training.reportTo), loaded
    with envFrom: e.g. MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or
    MLFLOW_TRACKING_TOKEN, WANDB_API_KEY (WANDB_BASE_URL for a self-hosted W&B), and any other
    MLFLOW_* / WANDB_* variable the trackers read."""


class Condition(ApiModel):
    """A Kubernetes-style status condition."""

    type: str = Field(max_length=316)
    """Condition type, e.g. Ready, Running, Succeeded, Failed, Invalid."""

    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""

    reason: str = Field(default="", max_length=1024)
    """One CamelCase word for why."""

    message: str = Field(default="", max_length=32768)
    """Human-readable details."""

    last_transition_time: datetime | None = None
    """When status last changed."""

    observed_generation: int | None = Field(default=None, ge=0)
    """metadata.generation the condition was computed from."""
