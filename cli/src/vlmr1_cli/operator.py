"""`vlmr1 operator`: run the GRPOJob/VLMService operator (in a cluster, or against `vlmr1 dev cluster`)."""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vlmr1_core.errors import UserError

if TYPE_CHECKING:
    from vlmr1_operator.settings import OperatorSettings


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "operator",
        help="run the kopf operator (uses KUBECONFIG, or the in-cluster service account)",
        description="Reconcile GRPOJobs into training gangs. Watches every namespace unless --namespace is given. "
        "Settings come from VLMR1_OPERATOR_* environment variables (see vlmr1_operator.settings).",
    )
    p.add_argument("--namespace", action="append", default=[], metavar="NS", help="watch NS (repeatable)")
    p.add_argument("--metrics-port", type=int, default=8080, help="Prometheus /metrics port (-1: off)")
    p.add_argument("--liveness-port", type=int, default=8081, help="kopf liveness /healthz port (-1: off)")
    p.add_argument("--standalone", action="store_true", help="no peering (a single replica, or development)")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from kubernetes.config import ConfigException

    from vlmr1_operator.operator import OperatorOptions
    from vlmr1_operator.operator import run as run_operator

    # Read before anything starts, so a bad setting is one line naming its variable rather
    # than a traceback from inside kopf's start-up.
    settings = operator_settings(os.environ)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    try:
        run_operator(
            OperatorOptions(
                namespaces=tuple(args.namespace),
                metrics_port=args.metrics_port if args.metrics_port >= 0 else None,
                liveness_port=args.liveness_port if args.liveness_port >= 0 else None,
                peering=not args.standalone,
            ),
            settings,
        )
    except ConfigException as exc:
        # Raised only while loading credentials: neither in-cluster nor a kubeconfig was found.
        raise UserError(
            f"no Kubernetes credentials ({str(exc).rstrip('.')})",
            fix="set KUBECONFIG (or create ~/.kube/config), run in a pod with a service account, or start a "
            "local control plane with `vlmr1 dev cluster up`",
        ) from exc
    return 0


def operator_settings(environ: Mapping[str, str]) -> OperatorSettings:
    """The operator's settings from VLMR1_OPERATOR_* variables; a bad one is a UserError naming it."""
    from pydantic import ValidationError

    from vlmr1_operator.settings import ENV_PREFIX, OperatorSettings

    try:
        return OperatorSettings.from_env(environ)
    except json.JSONDecodeError as exc:
        variable = next(
            (
                name
                for name, raw in sorted(environ.items())
                if name.startswith(ENV_PREFIX) and raw[:1] in "{[" and not _is_json(raw)
            ),
            f"{ENV_PREFIX}*",
        )
        raise UserError(f"not valid JSON: {exc}", field=variable, fix="write the map or list as JSON") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        variable = ENV_PREFIX + str(first["loc"][0]).upper() if first["loc"] else f"{ENV_PREFIX}*"
        detail = ".".join(str(part) for part in first["loc"][1:] if part != "[key]")  # pydantic's map-key marker
        message = f"{detail}: {first['msg']}" if detail else first["msg"]
        raise UserError(
            f"{message} (got {environ.get(variable)!r})",
            field=variable,
            fix="correct or unset the variable (the Helm chart sets these from its values)",
        ) from exc


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
