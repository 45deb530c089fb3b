"""The vlmr1.io/v1alpha1 API: pydantic models that generate the CRDs and parse objects."""

from vlmr1_core.api.common import API_GROUP, API_VERSION, GROUP_VERSION
from vlmr1_core.api.grpojob import GRPOJob, GRPOJobSpec, GRPOJobStatus
from vlmr1_core.api.vlmservice import VLMService, VLMServiceSpec, VLMServiceStatus

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "GROUP_VERSION",
    "KINDS",
    "GRPOJob",
    "GRPOJobSpec",
    "GRPOJobStatus",
    "VLMService",
    "VLMServiceSpec",
    "VLMServiceStatus",
]

#: Root model per kind, for loaders that dispatch on `kind`.
KINDS: dict[str, type[GRPOJob] | type[VLMService]] = {"GRPOJob": GRPOJob, "VLMService": VLMService}
