"""Experiment tracking (``training.reportTo``): transformers' own tracker callbacks, made safe.

transformers builds the TensorBoard, MLflow, W&B and trackio callbacks from ``report_to``, as a
TRL user expects; they log every step and the TrainingArguments on global rank 0 only. This
module adds what a job needs around them:

- the run is named after the job (``training.runName``, else the GRPOJob's name) and carries the
  job name, namespace and the resolved TrainerConfig (``vlmr1.*`` and ``config.*`` parameters);
- TensorBoard writes into the run folder's ``tensorboard/``, next to the checkpoints (on a
  cluster, the checkpoint volume or upload), and W&B keeps its files in the run folder too;
- a tracker that cannot be reached or initialised is one warning, and training goes on without
  it: a dashboard outage must not cost a GPU job.

Endpoints and credentials are the trackers' own environment variables (MLFLOW_TRACKING_URI,
WANDB_API_KEY, ...), which a GRPOJob's ``secrets.tracking`` Secret supplies.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from vlmr1_core.config import Tracker, TrainerConfig
from vlmr1_core.errors import UserError

if TYPE_CHECKING:
    from transformers import TrainerCallback

log = logging.getLogger(__name__)

TENSORBOARD_DIR = "tensorboard"
"""Folder in the run folder holding TensorBoard's event files."""

#: The package each tracker's transformers callback imports, as `pip install` names it.
PACKAGES: dict[Tracker, str] = {
    "tensorboard": "tensorboard",
    "mlflow": "mlflow-skinny",
    "wandb": "wandb",
    "trackio": "trackio",
}

#: Seconds to wait for a TCP connection to an http(s) MLflow server before giving up on it.
#: MLflow's client retries a refused connection with backoff for minutes; a quick probe first
#: makes a server that is down one prompt warning.
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class JobIdentity:
    """Which job a run belongs to (the GRPOJob's name and namespace)."""

    name: str
    namespace: str | None


def job_identity(output_dir: Path, name: str | None = None, namespace: str | None = None) -> JobIdentity:
    """The job's name and namespace: as given (``vlmr1 run`` reads them from the manifest), else
    from the pod's environment (VLMR1_JOB_NAME, VLMR1_NAMESPACE, set by the operator), else the
    run folder's name and no namespace."""
    return JobIdentity(
        name=name or os.environ.get("VLMR1_JOB_NAME") or output_dir.resolve().name,
        namespace=namespace or os.environ.get("VLMR1_NAMESPACE") or None,
    )


def training_arguments(config: TrainerConfig, identity: JobIdentity) -> dict[str, Any]:
    """The TrainingArguments that choose and name the trackers (report_to, run_name, project)."""
    training = config.training
    kwargs: dict[str, Any] = {"report_to": list(training.report_to), "run_name": training.run_name or identity.name}
    if training.project:
        kwargs["project"] = training.project  # trackio's; W&B and MLflow read the environment
    return kwargs


def check_installed(config: TrainerConfig) -> None:
    """Each tracker in reportTo can be used in this image, else a UserError naming the package."""
    from transformers.integrations import integration_utils as hf

    available: dict[str, Callable[[], bool]] = {
        "tensorboard": hf.is_tensorboard_available,
        "mlflow": hf.is_mlflow_available,
        "wandb": hf.is_wandb_available,
        "trackio": hf.is_trackio_available,
    }
    missing = [name for name in config.training.report_to if not available[name]()]
    if missing:
        packages = " ".join(PACKAGES[name] for name in missing)
        raise UserError(
            f"training.reportTo names {', '.join(missing)}, but this trainer cannot import it "
            "(or DISABLE_MLFLOW_INTEGRATION is set)",
            field="spec.training.reportTo",
            fix=f"use an image with `pip install {packages}` (the trainer extra carries tensorboard, mlflow "
            "and wandb), or remove it from reportTo",
        )


@contextmanager
def tracking_environment(config: TrainerConfig, output_dir: Path) -> Iterator[None]:
    """The trackers' environment for the length of a run, restored afterwards.

    ``training.project`` becomes WANDB_PROJECT and MLFLOW_EXPERIMENT_NAME (what transformers'
    callbacks read); W&B keeps its run files (offline runs included, for ``wandb sync``) in the
    run folder unless WANDB_DIR says otherwise.
    """
    values: dict[str, str] = {}
    trackers = set(config.training.report_to)
    if config.training.project:
        values |= {"WANDB_PROJECT": config.training.project, "MLFLOW_EXPERIMENT_NAME": config.training.project}
    if "wandb" in trackers and not os.environ.get("WANDB_DIR"):
        values["WANDB_DIR"] = str(output_dir)
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def install(trainer: Any, config: TrainerConfig, output_dir: Path, identity: JobIdentity) -> list[GuardedTracker]:
    """Wrap the trainer's tracker callbacks (built by transformers from report_to) so that a
    failing one is a warning, point TensorBoard at the run folder, and add the run metadata."""
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    names = {cls: name for name, cls in INTEGRATION_TO_CALLBACK.items() if name in config.training.report_to}
    handler = trainer.callback_handler
    guarded = []
    for i, callback in enumerate(handler.callbacks):
        name = names.get(type(callback))
        if name is None:
            continue
        if name == "tensorboard" and not os.environ.get("TENSORBOARD_LOGGING_DIR"):
            callback.logging_dir = str(output_dir / TENSORBOARD_DIR)
        handler.callbacks[i] = GuardedTracker(name, callback, RunMetadata(config, identity))
        guarded.append(handler.callbacks[i])
    return guarded


class RunMetadata:
    """The job name, namespace and resolved config, as each tracker records them."""

    def __init__(self, config: TrainerConfig, identity: JobIdentity) -> None:
        self.config, self.identity = config, identity

    def job(self) -> dict[str, str]:
        return {"vlmr1.job": self.identity.name, "vlmr1.namespace": self.identity.namespace or ""}

    def params(self) -> dict[str, str]:
        """Flat parameters: ``vlmr1.job``, ``vlmr1.namespace`` and ``config.<yaml path>`` per value."""
        flat = {f"config.{key}": value for key, value in flatten(self.config.to_yaml_dict()).items()}
        return {**self.job(), **flat}

    def nested(self) -> dict[str, Any]:
        """For trackers whose run config nests (W&B, trackio): job, namespace and the config."""
        return {"job": self.identity.name, "namespace": self.identity.namespace, "config": self.config.to_yaml_dict()}

    def yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.config.to_yaml_dict(), sort_keys=False)

    def record(self, name: Tracker, callback: Any) -> None:
        """Add the metadata to the run the tracker's callback has just started (rank 0)."""
        if name == "mlflow":
            import mlflow

            params = list(self.params().items())
            for start in range(0, len(params), 100):  # MLflow takes at most 100 per request
                mlflow.log_params(dict(params[start : start + 100]))
            mlflow.set_tags(self.job())
        elif name == "wandb":
            import wandb

            if wandb.run is not None:
                run_config: Any = wandb.run.config
                run_config.update({"vlmr1": self.nested()})
        elif name == "trackio":
            import trackio  # type: ignore[import-not-found]

            trackio.config.update({"vlmr1": self.nested()})
        elif name == "tensorboard" and callback.tb_writer is not None:
            writer = callback.tb_writer
            writer.add_text("vlmr1/job", f"{self.identity.name} (namespace {self.identity.namespace or '-'})")
            writer.add_text("vlmr1/config", "```yaml\n" + self.yaml() + "```")


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """Nested mappings and lists as ``a.b.0.c`` -> string value.

    >>> flatten({"training": {"learningRate": 0.01}, "rewards": [{"name": "rec_iou"}]})
    {'training.learningRate': '0.01', 'rewards.0.name': 'rec_iou'}
    """
    items: Mapping[Any, Any] | None = None
    if isinstance(value, Mapping):
        items = value
    elif isinstance(value, list):
        items = dict(enumerate(value))
    if items is None:
        return {prefix: str(value)}
    out: dict[str, str] = {}
    for key, inner in items.items():
        out |= flatten(inner, f"{prefix}.{key}" if prefix else str(key))
    return out


def _check_reachable(name: Tracker) -> None:
    """Fail fast, before the tracker's client retries for minutes, when its server is down."""
    if name != "mlflow":
        return
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise ConnectionError(f"cannot connect to MLFLOW_TRACKING_URI {uri}: {exc}") from exc


def _finish(name: Tracker) -> None:
    """Close the W&B run when training ends (transformers leaves it to the interpreter's exit,
    which a multi-rank trainer skips: worker.leave_distributed), so its files are complete."""
    if name == "wandb":
        import wandb

        if wandb.run is not None:
            wandb.finish()


class GuardedTracker:
    """A tracker's callback whose failures are warnings: the first exception it raises disables it
    for the rest of the run, and training goes on. On rank 0, once the tracker's run has started
    (on_train_begin), the run metadata is added to it."""

    def __init__(self, name: Tracker, inner: TrainerCallback, metadata: RunMetadata) -> None:
        self.name, self.inner, self.metadata = name, inner, metadata
        self.failed: BaseException | None = None

    def __getattr__(self, event: str) -> Any:
        # The callback handler calls on_<event>(args, state, control, **kwargs) on every callback.
        method = getattr(self.inner, event)
        if not event.startswith("on_"):
            return method

        def call(args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if self.failed is not None:
                return None
            try:
                if event == "on_train_begin" and state.is_world_process_zero:
                    _check_reachable(self.name)
                result = method(args, state, control, **kwargs)
                if event == "on_train_begin" and state.is_world_process_zero:
                    self.metadata.record(self.name, self.inner)
                if event == "on_train_end" and state.is_world_process_zero:
                    _finish(self.name)
                return result
            # Any exception: the trackers' clients raise their own types (MlflowException,
            # wandb's errors, requests' and OSError's), none of which may stop training.
            except Exception as exc:
                self.failed = exc
                log.warning(
                    "experiment tracker %s failed (%s: %s); training goes on without it",
                    self.name,
                    type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "",
                )
                self._close()
                return None

        return call

    def _close(self) -> None:
        """End a half-started run so that it does not linger (best effort)."""
        try:
            if self.name == "mlflow":
                import mlflow

                if mlflow.active_run() is not None:
                    mlflow.end_run(status="FAILED")
        except Exception:  # the server may be what failed
            log.debug("closing the %s run failed", self.name, exc_info=True)
