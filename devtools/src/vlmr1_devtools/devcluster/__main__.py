"""``python -m vlmr1_devtools.devcluster serve|proxy``: the processes behind ``vlmr1 dev cluster``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlmr1_devtools.devcluster")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="run the control plane in the foreground (Ctrl-C stops it)")
    serve.add_argument("--workdir", type=Path, required=True)
    serve.add_argument("--kubeconfig", type=Path, default=None, help="default: WORKDIR/kubeconfig")
    proxy = sub.add_parser("proxy", help="(internal) the front proxy")
    proxy.add_argument("--port", type=int, required=True)
    for opt in ("--upstream", "--ca", "--cert", "--key"):
        proxy.add_argument(opt, required=True)
    args = parser.parse_args(argv)

    if args.cmd == "proxy":
        from vlmr1_devtools.devcluster.proxy import run_proxy

        run_proxy(args.port, args.upstream, args.ca, args.cert, args.key)
        return 0
    from vlmr1_devtools.devcluster.daemon import serve as run_serve

    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    return run_serve(workdir, (args.kubeconfig or workdir / "kubeconfig").resolve())


if __name__ == "__main__":
    sys.exit(main())
