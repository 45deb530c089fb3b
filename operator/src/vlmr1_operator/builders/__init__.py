"""Pure builders: (validated object, operator settings) -> list of Kubernetes manifests.

No I/O, no environment, no clock: handlers apply what these return, and golden YAML
tests pin it for every example.
"""

from vlmr1_operator.builders.grpojob import build_grpojob
from vlmr1_operator.builders.vlmservice import build_vlmservice

__all__ = ["build_grpojob", "build_vlmservice"]
