"""`vlmr1 promote`: pin a verified, gated GRPOJob checkpoint in a VLMService manifest, as a Git commit.

The argument parsing and the cluster connection; the work is in :mod:`vlmr1_cli.gitops`.
The kubernetes client is imported only when ``--job`` needs it, so ``--run-dir`` works on a
machine without the operator extra and ``vlmr1 --help`` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vlmr1_cli.gitops.promote import JobReader

DESCRIPTION = """\
Choose a checkpoint of a GRPOJob (from the cluster, with your kubeconfig) or of a local run folder,
verify every file against its manifest, check the gates, and pin it in a VLMService manifest in a
Git work tree: only spec.model's uri and digest change (a fromJob entry becomes uri + digest), every
comment, key order and quoting stays as it was. The change is committed on a new branch (default
promote/<service>/<job>-step-<N>) created from the current HEAD, which stays checked out; --push
pushes it, ready for a pull request.

Refused, with nothing changed (exit 2): uncommitted changes to tracked files (untracked files are
ignored: they cannot enter the commit), a manifest file git does not track, a checkpoint that does
not verify (or whose manifest digest differs from the job's status), a gate miss (the message shows
the measured value), an unknown or ambiguous metric name, a job without checkpoints, a file without
a VLMService, a --branch that exists and pins something else. A failure after the branch was
created restores the file and the checkout and deletes the branch. Promoting a checkpoint that is
already pinned (in the work tree, or on the target branch) changes nothing and exits 0.

Gates (--require, repeatable) are NAME OP NUMBER, OP one of >= > <= < == !=, checked against the
metrics in the verified manifest. NAME is a full metric name (reward, eval/refcoco-val/rec_acc) or
the last part of exactly one (rec_acc). Metrics measured after training by `vlmr1 eval` (in-process,
through a serving endpoint, or from saved predictions) count too when passed with --eval-results: its
metrics.json must record the digest of the checkpoint being promoted, and its values take precedence
over the manifest's for the same names.
"""

EPILOG = """\
examples:
  vlmr1 promote --job rec-qwen25vl-3b -n ml --service deploy/rec.yaml --require 'rec_acc>=0.85' --push
  vlmr1 promote --job rec-qwen25vl-3b --service deploy/rec.yaml --select step=1200 --pvc-root /mnt/pvc
  vlmr1 promote --run-dir runs/rec --uri-prefix pvc://vlmr1-checkpoints/rec/checkpoints \\
      --service examples/vlmservice-dev-cpu.yaml --select latest --dry-run
"""


def register(subparsers: Any) -> None:
    """Add ``promote`` to the ``vlmr1`` parser."""
    parser = subparsers.add_parser(
        "promote",
        help="pin a verified checkpoint in a VLMService manifest and commit it on a new Git branch",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_argument_group("checkpoint source (one of)")
    exclusive = source.add_mutually_exclusive_group(required=True)
    exclusive.add_argument("--job", metavar="NAME", help="a GRPOJob on the cluster: its status.checkpoints")
    exclusive.add_argument(
        "--run-dir",
        type=Path,
        metavar="DIR",
        help="a local run folder (DIR/checkpoints/checkpoint-<step>/, as `vlmr1 run` writes it)",
    )
    source.add_argument("-n", "--namespace", help="the GRPOJob's namespace (default: the context's, else default)")
    source.add_argument("--context", help="kubeconfig context (default: the current one)")
    source.add_argument(
        "--kubeconfig", metavar="FILE", help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)"
    )
    source.add_argument(
        "--select",
        default="best",
        metavar="best|latest|step=N",
        help="which checkpoint: the job's best by its checkpoint.bestMetric (default), the newest, or a step",
    )
    source.add_argument(
        "--require",
        action="append",
        default=[],
        metavar="EXPR",
        help="a gate the checkpoint's metrics must pass, e.g. 'rec_acc>=0.85' (repeatable)",
    )
    source.add_argument(
        "--eval-results",
        action="append",
        default=[],
        type=Path,
        metavar="DIR|FILE",
        help="a `vlmr1 eval` results folder (or its metrics.json) of this checkpoint, whatever produced the "
        "predictions: its metrics are gated too (repeatable)",
    )
    source.add_argument(
        "--uri-prefix",
        metavar="PREFIX",
        help="with --run-dir: the uri serving pods see the checkpoints folder at (the VLMService pins "
        "PREFIX/checkpoint-<step>); default: the recorded checkpoint.uri + /checkpoints when it is a pvc:// or "
        "s3:// uri",
    )
    source.add_argument(
        "--pvc-root",
        type=Path,
        metavar="DIR",
        help="with --job: where pvc:// claims are mounted on this machine, to verify the files "
        "(default: $VLMR1_PVC_ROOT, else /mnt/pvc)",
    )
    target = parser.add_argument_group("target")
    target.add_argument(
        "--service", type=Path, required=True, metavar="FILE", help="the VLMService manifest, in a Git work tree"
    )
    target.add_argument("--service-name", metavar="NAME", help="which VLMService, when FILE holds several")
    target.add_argument("--branch", help="branch to commit on (default: promote/<service>/<job>-step-<N>)")
    target.add_argument("--push", action="store_true", help="push the branch to --remote (upstream set)")
    target.add_argument("--remote", default="origin", help="remote for --push (default: %(default)s)")
    target.add_argument(
        "--dry-run", action="store_true", help="verify and gate, print the diff and the commit message; change nothing"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``vlmr1 promote``: exit 0 when promoted (or already promoted); a refusal is a
    PromoteError, which ``vlmr1.main`` prints (exit 2)."""
    from vlmr1_cli.gitops import PromoteError
    from vlmr1_cli.gitops.evalresults import read_eval_results
    from vlmr1_cli.gitops.promote import Request, promote
    from vlmr1_cli.gitops.select import parse_gate, parse_selection
    from vlmr1_core.uri import pvc_root

    reader: JobReader | None = None
    namespace = args.namespace or "default"
    if args.job is not None:
        reader, namespace = kubernetes_reader(args.kubeconfig, args.context, args.namespace)
    elif args.namespace or args.context or args.kubeconfig or args.pvc_root:
        raise PromoteError("--namespace, --context, --kubeconfig and --pvc-root go with --job, not --run-dir")
    request = Request(
        service=args.service,
        service_name=args.service_name,
        job=args.job,
        namespace=namespace,
        run_dir=args.run_dir,
        selection=parse_selection(args.select),
        gates=[parse_gate(expr) for expr in args.require],
        uri_prefix=args.uri_prefix,
        pvc_root=args.pvc_root or pvc_root(),
        branch=args.branch,
        push=args.push,
        remote=args.remote,
        dry_run=args.dry_run,
        eval_results=[read_eval_results(path) for path in args.eval_results],
    )
    promote(request, reader)
    return 0


def kubernetes_reader(kubeconfig: str | None, context: str | None, namespace: str | None) -> tuple[JobReader, str]:
    """A ``read_job(namespace, name)`` over the user's kubeconfig, and the namespace to use
    (``namespace``, else the context's, else default)."""
    from vlmr1_cli.gitops import PromoteError

    try:
        from kubernetes import client, config
    except ImportError as exc:
        raise PromoteError(
            "--job needs the kubernetes client (install vlmr1 with the operator extra), or promote from a run "
            "folder with --run-dir"
        ) from exc
    try:
        config.load_kube_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call, unused-ignore]
        if namespace is None:
            contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call, unused-ignore]
            chosen = next((c for c in contexts if c.get("name") == context), active) if context else active
            namespace = (chosen or {}).get("context", {}).get("namespace") or "default"
    except config.ConfigException as exc:
        raise PromoteError(
            f"cannot load the kubeconfig ({exc}); set KUBECONFIG or pass --context, or promote from a run folder "
            "with --run-dir"
        ) from exc
    api = client.CustomObjectsApi()

    def read_job(ns: str, name: str) -> Mapping[str, Any]:
        try:
            obj = api.get_namespaced_custom_object("vlmr1.io", "v1alpha1", ns, "grpojobs", name)
        except client.ApiException as exc:
            if exc.status == 404:
                raise PromoteError(f"GRPOJob {ns}/{name} not found; check the name and -n/--namespace") from exc
            raise PromoteError(f"cannot read GRPOJob {ns}/{name}: {exc.status} {exc.reason}") from exc
        except Exception as exc:  # urllib3 connection errors have no common public base in the client
            raise PromoteError(f"cannot reach the API server to read GRPOJob {ns}/{name}: {exc}") from exc
        if not isinstance(obj, Mapping):
            raise PromoteError(f"GRPOJob {ns}/{name}: the API server returned {type(obj).__name__}, not an object")
        return obj

    return read_job, namespace
