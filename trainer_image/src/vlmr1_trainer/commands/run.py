"""`vlmr1 run FILE.yaml`: a GRPOJob trained on this machine, with no cluster.

The job's YAML is the one `kubectl apply` takes. Locally the gang is `--nnodes` x
`--nproc-per-node` processes (default one) with the pods' environment contract, the
accelerator is CPU unless CUDA is there, and relative paths in the spec resolve from
the YAML file's folder, so `vlmr1 run examples/...` works from any directory.

Checks run cheapest first: the manifest (fields, rules, reward names), then the rewards'
parameters and every data file (:mod:`vlmr1_trainer.preflight`), then the model. An error
about a spec field gets the YAML file and line of that field.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml
from pydantic import ValidationError

from vlmr1_core.api.grpojob import GRPOJob
from vlmr1_core.api.manifest import line_of_field
from vlmr1_core.config import TrainerConfig
from vlmr1_core.errors import UserError

SCHEMES = ("hf://", "s3://", "pvc://", "builtin://")


def load_job(path: Path) -> GRPOJob:
    """The GRPOJob in a file, its reward names checked against this trainer's registry (which
    holds a custom image's rewards too); else a UserError naming file, line and field."""
    from vlmr1_core.api.manifest import load_manifest
    from vlmr1_trainer.rewards import available

    job = load_manifest(path, GRPOJob, known_rewards=available())
    assert isinstance(job, GRPOJob)
    return job


def local_config(job: GRPOJob, path: Path, nnodes: int, nproc: int, accelerator: str) -> TrainerConfig:
    """The job's TrainerConfig for a local world (relative paths resolved from ``path``'s
    folder), or a UserError naming file, line and field."""
    data = job.spec.model_dump(by_alias=True, exclude_none=True)
    base = path.resolve().parent
    data["model"]["uri"] = _rebase(data["model"]["uri"], base)
    for dataset in [*data["datasets"], *data.get("evaluation", {}).get("datasets", [])]:
        dataset["jsonl"] = _rebase(dataset["jsonl"], base)
        if "imageRoot" in dataset:
            dataset["imageRoot"] = _rebase(dataset["imageRoot"], base)
    if "uri" in data.get("rewardCode", {}):
        data["rewardCode"]["uri"] = _rebase(data["rewardCode"]["uri"], base)
    # The local world replaces the pods': re-check the rules that depend on it.
    data["resources"] = {"accelerator": accelerator, "nodes": nnodes, "processesPerNode": nproc}
    try:
        spec = type(job.spec).model_validate(data)
    except ValidationError as exc:
        field, message = _first_error(exc)
        raise UserError(
            f"with {nnodes} node(s) x {nproc} process(es) locally: {message}",
            file=path,
            line=line_of_field(path, field),
            field=field,
            fix="change --nnodes/--nproc-per-node, or the batch settings in the file",
        ) from exc
    return spec.trainer_view()


def _rebase(uri: str, base: Path) -> str:
    """A relative local path made absolute from the manifest's folder; uris and hub ids unchanged."""
    if uri.startswith(SCHEMES) or Path(uri).is_absolute():
        return uri
    candidate = base / uri
    # A bare hub id (org/name) that is not a local path stays as it is.
    return str(candidate) if candidate.exists() or uri.startswith(".") else uri


def _first_error(exc: ValidationError) -> tuple[str, str]:
    """(field, message) of the first problem; a cross-field rule names its field in ``ctx``."""
    first = exc.errors()[0]
    loc = [str(part) for part in first["loc"]]
    field_path = (first.get("ctx") or {}).get("field_path", "")
    if field_path:
        loc += field_path.strip(".").split(".")
    return ".".join(["spec", *loc]), first["msg"].removeprefix("Value error, ")


def local_accelerator() -> str:
    import torch

    return "nvidia" if torch.cuda.is_available() else "cpu"


def run(args: argparse.Namespace) -> int:
    """Handler of ``vlmr1 run``; an error about a spec field is located in the YAML file."""
    try:
        return _run(args)
    except UserError as exc:
        if exc.file is None and exc.field and exc.field.startswith("spec."):
            exc.at(file=args.file, line=line_of_field(args.file, exc.field))
        raise


def _run(args: argparse.Namespace) -> int:
    if args.nnodes < 1 or args.nproc_per_node < 1:
        raise UserError("--nnodes and --nproc-per-node must be at least 1")
    job = load_job(args.file)  # before torch is imported for local_accelerator: seconds sooner
    accelerator = local_accelerator()
    config = local_config(job, args.file, args.nnodes, args.nproc_per_node, accelerator)
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
            debug=args.dump_completions,
            job_name=job.metadata.name,
            namespace=job.metadata.namespace,
        )
        print_summary(result, sys.stdout)
        return 0
    from vlmr1_trainer.launch import current_environ, start_local_nodes, wait_all
    from vlmr1_trainer.preflight import check_inputs

    # Here, before any process starts: an error then names the YAML file's line, not only
    # the generated config.yaml in each node's log.
    check_inputs(config)

    config_file = output / "config.yaml"
    config_file.write_text(yaml.safe_dump(config.to_yaml_dict(), sort_keys=False), encoding="utf-8")
    module_args = ["--config", str(config_file), "--output", str(output), "--accelerator", accelerator]
    if args.max_steps:
        module_args += ["--max-steps", str(args.max_steps)]
    if args.no_resume:
        module_args.append("--no-resume")
    if args.dump_completions:
        module_args.append("--dump-completions")
    if args.metrics_port is not None:
        module_args += ["--metrics-port", str(args.metrics_port)]
    # The manifest's name and namespace name the run in the trackers, as the operator's pod env does.
    environ = current_environ() | {"VLMR1_JOB_NAME": job.metadata.name, "VLMR1_NAMESPACE": job.metadata.namespace or ""}
    procs = start_local_nodes(args.nnodes, args.nproc_per_node, module_args, output / "logs", environ)
    return wait_all(procs)
