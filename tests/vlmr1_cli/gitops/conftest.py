"""Fixtures for promotion tests: real git repositories and real (tiny, fake-weight) checkpoints."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from vlmr1_core.checkpoints import CheckpointInfo, save_checkpoint
from vlmr1_devtools.devcluster.fixtures import control_plane  # noqa: F401  (the real API server, a fixture)

SERVICE = """\
# The REC model, served on CPU for development.
apiVersion: vlmr1.io/v1alpha1
kind: VLMService
metadata:
  name: rec-dev   # the Service name
  namespace: ml
spec:
  model:
    # pinned by vlmr1 promote
    uri: pvc://vlmr1-checkpoints/old/checkpoint-1   # the served checkpoint
    digest: sha256:7bfeb668af2219300e9f1cb7c24bea23e9eed2022b5147aeb6bf775c95197b5c
    family: qwen2.5-vl
  engine:
    name: transformers
  resources:
    accelerator: cpu
    devicesPerReplica: 0
"""

EVAL = "eval/refcoco-val/rec_acc"


@pytest.fixture(autouse=True)
def git_identity(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A fixed author and no user or system git config (signing, hooks, templates stay out)."""
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "Promote Test")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "promote@example.invalid")
    empty = tmp_path_factory.mktemp("gitconfig") / "config"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def git() -> Callable[..., str]:
    """``git(root, *args)``: run git there and return its stdout (a failure fails the test)."""
    return _git


@pytest.fixture
def service_yaml() -> str:
    """A VLMService manifest with comments, pinned to an old checkpoint."""
    return SERVICE


@pytest.fixture
def run_metrics() -> dict[int, dict[str, Any]]:
    """Metrics of three checkpoints: step 4 is best by reward and by rec_acc, step 6 is latest."""
    return {step: dict(m) for step, m in METRICS.items()}


@pytest.fixture
def config_of() -> Callable[..., dict[str, Any]]:
    """``config_of(best_metric, greater_is_better)``: a manifest's recorded trainer config."""
    return trainer_config


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., Path]:
    """A git repository on branch main whose first commit holds ``deploy/<name>`` with ``text``."""

    def make(text: str = SERVICE, name: str = "rec.yaml", crlf: bool = False) -> Path:
        root = tmp_path / "gitops"
        (root / "deploy").mkdir(parents=True)
        _git(root, "init", "--quiet", "-b", "main")
        data = text.replace("\n", "\r\n") if crlf else text
        (root / "deploy" / name).write_bytes(data.encode())
        (root / "README.md").write_text("deployments\n")
        _git(root, "add", ".")
        _git(root, "commit", "--quiet", "-m", "initial")
        return root / "deploy" / name

    return make


def trainer_config(best_metric: str | None = None, greater_is_better: bool | None = None) -> dict[str, Any]:
    """The camelCase config a checkpoint manifest records (only the parts promote reads)."""
    checkpoint: dict[str, Any] = {"uri": "pvc://vlmr1-checkpoints/rec"}
    if best_metric is not None:
        checkpoint["bestMetric"] = best_metric
    if greater_is_better is not None:
        checkpoint["greaterIsBetter"] = greater_is_better
    return {"model": {"uri": "builtin://tiny-qwen2.5-vl"}, "checkpoint": checkpoint}


def write_weights(payload: bytes) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        (folder / "model.safetensors").write_bytes(payload)
        (folder / "config.json").write_text('{"model_type": "qwen2_5_vl"}')

    return write


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., dict[int, CheckpointInfo]]:
    """A run folder ``tmp/runs/rec`` with ``checkpoints/checkpoint-<step>`` for each step's metrics."""

    def make(
        metrics: Mapping[int, Mapping[str, Any]],
        config: Mapping[str, Any] | None = None,
        root: Path | None = None,
    ) -> dict[int, CheckpointInfo]:
        run = root or tmp_path / "runs" / "rec"
        return {
            step: save_checkpoint(
                run / "checkpoints",
                step,
                write_weights(f"weights {step}".encode()),
                metrics=m,
                config=config if config is not None else trainer_config(),
                uri="pvc://vlmr1-checkpoints/rec/checkpoints",
            )
            for step, m in metrics.items()
        }

    return make


METRICS: dict[int, dict[str, Any]] = {
    2: {"reward": 0.4, "loss": 0.3, EVAL: 0.62, "eval/refcoco-val/samples": 100},
    4: {"reward": 0.7, "loss": 0.2, EVAL: 0.91, "eval/refcoco-val/samples": 100},
    6: {"reward": 0.5, "loss": 0.1, EVAL: 0.88, "eval/refcoco-val/samples": 100},
}
