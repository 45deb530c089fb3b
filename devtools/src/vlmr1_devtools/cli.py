"""`vlmr1 dev cluster up|down|status`: a local control plane to try the operator without a cluster.

The CRDs and custom resources live on a real apiextensions-apiserver (built once from Debian's
Kubernetes sources and cached); Pods, Services, ConfigMaps, Events and PodGroups on a simulated
API (see vlmr1_devtools.devcluster). Nothing runs pods: play the kubelet with
`kubectl patch pod NAME --subresource=status --type=merge -p '{"status": {"phase": "Running"}}'`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    dev = subparsers.add_parser(
        "dev",
        help="development tools (a local control plane)",
        description="Development tools that need no cluster.",
    )
    dev_sub = dev.add_subparsers(title="dev commands", metavar="COMMAND", required=True)
    cluster = dev_sub.add_parser(
        "cluster",
        help="a local Kubernetes control plane in the background",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = cluster.add_subparsers(title="actions", metavar="ACTION", required=True)
    up = actions.add_parser(
        "up",
        help="start it (or find it running), install the CRDs, write a kubeconfig",
        description="Start the local control plane in the background (building the API server first "
        "if it is not cached), install kopf's and vlmr1's CRDs, write a kubeconfig and return once it "
        "serves. Then: KUBECONFIG=PATH kubectl apply -f examples/...; KUBECONFIG=PATH vlmr1 operator.",
    )
    up.add_argument(
        "--kubeconfig", type=Path, default=None, help="where to write the kubeconfig (default: WORKDIR/kubeconfig)"
    )
    up.add_argument("--timeout", type=float, default=300.0, help="seconds to wait until it serves (default: 300)")
    up.set_defaults(handler=run_up)
    down = actions.add_parser("down", help="stop it (all state is lost)")
    down.set_defaults(handler=run_down)
    status = actions.add_parser("status", help="say whether it runs, and where")
    status.set_defaults(handler=run_status)
    for parser in (up, down, status):
        parser.add_argument(
            "--workdir",
            type=Path,
            default=None,
            help="its logs, certificates and pid file (default: ${VLMR1_CACHE_DIR:-~/.cache/vlmr1}/devcluster)",
        )


def _workdir(args: argparse.Namespace) -> Path:
    from vlmr1_devtools.devcluster.daemon import default_dir

    path: Path = args.workdir or default_dir()
    return path.expanduser().resolve()


def run_up(args: argparse.Namespace) -> int:
    from vlmr1_devtools.devcluster import ControlPlaneError
    from vlmr1_devtools.devcluster.daemon import up

    workdir = _workdir(args)
    kubeconfig = (args.kubeconfig or workdir / "kubeconfig").expanduser().resolve()
    try:
        started, state = up(workdir, kubeconfig, timeout=args.timeout)
    except ControlPlaneError as exc:
        print(f"vlmr1 dev cluster up: {exc}", file=sys.stderr)
        return 1
    if started:
        print(f"dev cluster running at {state['server_url']} (Kubernetes {state['k8s_version']}); logs in {workdir}")
    else:
        print(f"dev cluster already running at {state['server_url']} (pid {state['pid']})")
        if Path(state["kubeconfig"]) != kubeconfig:
            print(f"note: its kubeconfig is {state['kubeconfig']}, not {kubeconfig}")
    print(f"kubeconfig: {state['kubeconfig']}")
    print(f"export KUBECONFIG={state['kubeconfig']}")
    return 0


def run_down(args: argparse.Namespace) -> int:
    from vlmr1_devtools.devcluster.daemon import down

    workdir = _workdir(args)
    print("dev cluster stopped" if down(workdir) else f"no dev cluster running in {workdir}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from vlmr1_devtools.devcluster.daemon import read_state, running_pid

    workdir = _workdir(args)
    state = read_state(workdir)
    if running_pid(workdir) is None or state is None:
        print(f"no dev cluster running in {workdir}")
        return 1
    print(f"dev cluster running at {state['server_url']} (pid {state['pid']})")
    print(f"export KUBECONFIG={state['kubeconfig']}")
    return 0
