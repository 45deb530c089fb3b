"""`vlmr1 run FILE.yaml`: a GRPOJob trained on this machine, with no cluster.

The job's YAML is the one `kubectl apply` takes. Locally the gang is `--nnodes` x
`--nproc-per-node` processes (default one) with the pods' environment contract, the
accelerator is CPU unless CUDA is there, and relative paths in the spec resolve from
the YAML file's folder, so `vlmr1 run examples/...` works from any directory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from vlmr1_core.config import TrainerConfig

SCHEMES = ("hf://", "s3://", "pvc://", "builtin://")


def local_config(path: Path, nnodes: int, nproc: int, accelerator: str) -> TrainerConfig:
    """The job's TrainerConfig for a local world, or a SystemExit naming file, line and field."""
    from vlmr1_core.api.grpojob import GRPOJob
    from vlmr1_core.api.manifest import ManifestError, load_manifest

    try:
        job = load_manifest(path, GRPOJob)
    except ManifestError as exc:
        raise SystemExit(str(exc)) from exc
    assert isinstance(job, GRPOJob)
    data = job.spec.model_dump(by_alias=True, exclude_none=True)
    base = path.resolve().parent
    data["model"]["uri"] = _rebase(data["model"]["uri"], base)
    for dataset in [*data["datasets"], *data.get("evaluation", {}).get("datasets", [])]:
        dataset["jsonl"] = _rebase(dataset["jsonl"], base)
        if "imageRoot" in dataset:
            dataset["imageRoot"] = _rebase(dataset["imageRoot"], base)
    # The local world replaces the pods': re-check the rules that depend on it.
    data["resources"] = {"accelerator": accelerator, "nodes": nnodes, "processesPerNode": nproc}
    try:
        spec = type(job.spec).model_validate(data)
    except Exception as exc:
        raise SystemExit(
            f"{path}: with {nnodes} node(s) x {nproc} process(es) locally: {_first_error(exc)}\n"
            "change --nnodes/--nproc-per-node, or the batch settings in the file"
        ) from exc
    return spec.trainer_view()


def _rebase(uri: str, base: Path) -> str:
    """A relative local path made absolute from the manifest's folder; uris and hub ids unchanged."""
    if uri.startswith(SCHEMES) or Path(uri).is_absolute():
        return uri
    candidate = base / uri
    # A bare hub id (org/name) that is not a local path stays as it is.
    return str(candidate) if candidate.exists() or uri.startswith(".") else uri


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"spec.{'.'.join(map(str, first['loc']))}: {first['msg']}"
    return str(exc)


def local_accelerator() -> str:
    import torch

    return "nvidia" if torch.cuda.is_available() else "cpu"


def run(args: argparse.Namespace) -> int:
    if args.nnodes < 1 or args.nproc_per_node < 1:
        raise SystemExit("--nnodes and --nproc-per-node must be at least 1")
    accelerator = local_accelerator()
    config = local_config(args.file, args.nnodes, args.nproc_per_node, accelerator)
    output: Path = args.output or Path("runs") / args.file.stem
    output.mkdir(parents=True, exist_ok=True)
    if args.nnodes * args.nproc_per_node == 1:
        from vlmr1_trainer.worker import print_summary, run_training

        result = run_training(
            config,
            output=output,
            accelerator=accelerator,  # type: ignore[arg-type]
            world_size=1,
            max_steps=args.max_steps,
            resume=not args.no_resume,
            metrics_port=args.metrics_port,
            debug=args.debug,
        )
        print_summary(result, sys.stdout)
        return 0
    from vlmr1_trainer.launch import current_environ, start_local_nodes, wait_all

    config_file = output / "config.yaml"
    config_file.write_text(yaml.safe_dump(config.to_yaml_dict(), sort_keys=False), encoding="utf-8")
    module_args = ["--config", str(config_file), "--output", str(output), "--accelerator", accelerator]
    if args.max_steps:
        module_args += ["--max-steps", str(args.max_steps)]
    if args.no_resume:
        module_args.append("--no-resume")
    if args.debug:
        module_args.append("--debug")
    if args.metrics_port is not None:
        module_args += ["--metrics-port", str(args.metrics_port)]
    procs = start_local_nodes(args.nnodes, args.nproc_per_node, module_args, output / "logs", current_environ())
    return wait_all(procs)
