"""`vlmr1 operator`: run the GRPOJob/VLMService operator (in a cluster, or against `vlmr1 dev cluster`)."""

from __future__ import annotations

import argparse
import logging
from typing import Any


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
    from vlmr1_operator.operator import OperatorOptions
    from vlmr1_operator.operator import run as run_operator

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    run_operator(
        OperatorOptions(
            namespaces=tuple(args.namespace),
            metrics_port=args.metrics_port if args.metrics_port >= 0 else None,
            liveness_port=args.liveness_port if args.liveness_port >= 0 else None,
            peering=not args.standalone,
        )
    )
    return 0
