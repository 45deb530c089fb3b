"""`vlmr1 operator`: the kopf operator process.

kopf watches GRPOJobs, VLMServices and the children the operator made (handlers/); every
event reconciles its object at once. What no watch event announces (a deadline or TTL coming
due, the trainer's progress, an autoscaling period, a retry after an API error) is each
object's due time in resync.py, whose loop reconciles objects when they fall due. Replicas
coordinate with kopf's peering: each takes a distinct priority (newest wins), kopf pauses the
others' handlers, and the resync loop acts only in the replica whose priority is highest
among live peers.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from vlmr1_operator import k8s
from vlmr1_operator.handlers import grpojob, vlmservice
from vlmr1_operator.handlers.base import Controller
from vlmr1_operator.metrics import OperatorMetrics
from vlmr1_operator.resync import DueQueue, Resync
from vlmr1_operator.settings import PEERING_NAME, OperatorSettings

log = logging.getLogger("vlmr1_operator")


@dataclass
class OperatorOptions:
    namespaces: Sequence[str] = ()
    """Namespaces to watch; empty watches the whole cluster."""
    metrics_port: int | None = 8080
    liveness_port: int | None = 8081
    peering: bool = True
    """Coordinate replicas through kopf.dev peering objects (standalone when False)."""
    priority: int = field(default_factory=lambda: int(time.time() * 1000) * 1000 + random.randrange(1000))
    """Distinct per replica: equal priorities would let two replicas act at once."""


def is_leader(kube: k8s.Kube, options: OperatorOptions, identity: str) -> bool:
    """Whether no live peer has a higher priority (kopf pauses our handlers otherwise)."""
    if not options.peering:
        return True
    namespaces: Sequence[str | None] = options.namespaces or [None]
    for namespace in namespaces:
        resource = k8s.KOPF_PEERINGS if namespace else k8s.CLUSTER_KOPF_PEERINGS
        peering = kube.get(resource, namespace, PEERING_NAME) or {}
        now = datetime.now(UTC)
        for peer_id, peer in (peering.get("status") or {}).items():
            if peer_id == identity or not isinstance(peer, dict):
                continue
            seen = datetime.fromisoformat(str(peer.get("lastseen", "1970-01-01T00:00:00+00:00")))
            alive = (now - seen).total_seconds() < float(peer.get("lifetime", 60))
            if alive and int(peer.get("priority", 0)) > options.priority:
                return False
    return True


def require_peering_objects(kube: k8s.Kube, options: OperatorOptions) -> None:
    """kopf never creates peering objects and would wait silently without them: fail clearly."""
    namespaces: Sequence[str | None] = options.namespaces or [None]
    for namespace in namespaces:
        resource = k8s.KOPF_PEERINGS if namespace else k8s.CLUSTER_KOPF_PEERINGS
        if kube.get(resource, namespace, PEERING_NAME) is None:
            kind = f"KopfPeering {namespace}/{PEERING_NAME}" if namespace else f"ClusterKopfPeering {PEERING_NAME}"
            raise SystemExit(
                f"{kind} does not exist: replicas coordinate through it. The Helm chart creates it; create it "
                "yourself (apiVersion kopf.dev/v1, no spec needed) or run a single replica with --standalone"
            )


def build_registry(controllers: Sequence[Controller], options: OperatorOptions, identity: str) -> Any:
    """kopf's handlers for `controllers` (which share one DueQueue), and the resync loop over them."""
    registry = kopf.OperatorRegistry()
    for controller in controllers:
        if isinstance(controller, grpojob.GRPOJobController):
            grpojob.register(registry, controller)
        elif isinstance(controller, vlmservice.VLMServiceController):
            vlmservice.register(registry, controller)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # kopf's own watches use the same credentials as k8s.Kube: the kubernetes client's.
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.posting.level = logging.INFO
        settings.peering.name = PEERING_NAME
        settings.peering.priority = options.priority
        settings.peering.mandatory = options.peering
        settings.execution.max_workers = 16
        kube = controllers[0].kube
        resync = Resync(
            controllers, controllers[0].queue, is_leader=lambda: is_leader(kube, options, identity),
            namespaces=list(options.namespaces) or [None],
        )  # fmt: skip
        resync.start()
        memo["resync"] = resync

    @kopf.on.cleanup(registry=registry)
    def stop(memo: kopf.Memo, **_: Any) -> None:
        resync = memo.get("resync")
        if resync is not None:
            resync.stop()

    return registry


def run(options: OperatorOptions, settings: OperatorSettings | None = None) -> None:
    """Run until interrupted (kopf handles SIGINT/SIGTERM)."""
    settings = settings or OperatorSettings.from_env()
    metrics = OperatorMetrics()
    if options.metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(options.metrics_port, registry=metrics.registry)
    kube = k8s.Kube(on_call=metrics.api_call)
    if options.peering:
        require_peering_objects(kube, options)
    queue = DueQueue()
    controllers: list[Controller] = [
        grpojob.GRPOJobController(kube, settings, metrics, queue),
        vlmservice.VLMServiceController(kube, settings, metrics, queue),
    ]
    identity = f"vlmr1-{os.uname().nodename}-{os.getpid()}"
    registry = build_registry(controllers, options, identity)
    liveness = f"http://0.0.0.0:{options.liveness_port}/healthz" if options.liveness_port is not None else None
    kopf.run(
        registry=registry,
        clusterwide=not options.namespaces,
        namespaces=list(options.namespaces),
        standalone=not options.peering,
        priority=options.priority,
        peering_name=PEERING_NAME,
        identity=kopf.Identity(identity) if hasattr(kopf, "Identity") else identity,  # type: ignore[arg-type]
        liveness_endpoint=liveness,
    )
