"""Evaluate on evaluation sets: get each sample's prediction, score, write the results.

Predictions come from one of three sources, scored identically: the loaded policy
(:class:`InProcess`, batched greedy generation), an OpenAI-compatible endpoint
(:class:`FromEndpoint`) or a saved predictions file per set (:class:`FromFiles`).

Results, for error analysis and for the record: ``<output>/metrics.json`` (what was
evaluated — uri, digest, step —, how the predictions were produced — ``source`` — and every
metric) and ``<output>/<set>.samples.jsonl`` (one line per sample: source file:line,
prediction, parsed answer, ground truth, score, details). Metric names are
``eval/<set>/<metric>``, as in checkpoint manifests and GRPOJob status.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from vlmr1_core.config import DEFAULT_MAX_COMPLETION_LENGTH, EvalTask, TrainerConfig

if TYPE_CHECKING:
    from vlmr1_trainer.evaluation.endpoint import ChatEndpoint
    from vlmr1_trainer.evaluation.policy import Policy
    from vlmr1_trainer.evaluation.predictions import PredictionsFile

METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class EvalSet:
    """One evaluation set as the runner needs it."""

    name: str
    task: EvalTask
    jsonl: str
    """Uri or path of the JSONL file."""
    image_root: str | None = None
    max_samples: int | None = None


def sets_from_config(config: TrainerConfig) -> list[EvalSet]:
    """The GRPOJob's evaluation section as EvalSets (empty without one)."""
    if config.evaluation is None:
        return []
    return [
        EvalSet(d.name, config.eval_task(d), d.jsonl, d.image_root, d.max_samples) for d in config.evaluation.datasets
    ]


def metric_key(set_name: str, metric: str) -> str:
    """``eval/<set>/<metric>``: the name of an evaluation metric everywhere."""
    return f"eval/{set_name}/{metric}"


def load_rows(policy: Policy, eval_set: EvalSet, *, limit: bool = True) -> list[dict[str, Any]]:
    """The set's samples as prompt rows for the policy's family (the training prompt template
    of the set's task), each with its ``source`` (file:line) for error messages; the first
    ``max_samples`` only, unless ``limit`` is false."""
    from vlmr1_core.uri import resolve_local_path
    from vlmr1_trainer.data import DataSource, VLMR1Dataset
    from vlmr1_trainer.train import FamilyRowHook, QuestionTemplate
    from vlmr1_trainer.vlm.prompts import format_question

    jsonl = resolve_local_path(eval_set.jsonl)
    images = resolve_local_path(eval_set.image_root) if eval_set.image_root else None
    template = policy.family.question_template(eval_set.task)
    # Without a processor (a reference given only a family) the model-input size is unknown;
    # load_reference refuses that case where REC needs it, and no other task reads the sizes.
    hook = None
    if policy.processor is not None or policy.family.box_convention.kind != "model_input_pixels":
        hook = FamilyRowHook(policy.family, policy.processor, None)
    dataset = VLMR1Dataset.from_sources(
        [DataSource(jsonl, images, None)],
        question_template=QuestionTemplate(template, format_question),
        row_hook=hook,
    )
    samples = dataset.samples[: eval_set.max_samples] if limit and eval_set.max_samples else dataset.samples
    return [{**dataset.row(s), "source": f"{s.source}:{s.line}"} for s in samples]


Progress = Callable[[int], None]


class PredictionSource(Protocol):
    """Where the predictions of a set come from."""

    def record(self) -> dict[str, Any]:
        """How the predictions were produced, for ``metrics.json``'s ``source``."""
        ...

    def rows(self, policy: Policy, eval_set: EvalSet) -> list[dict[str, Any]]:
        """The set's rows to score."""
        ...

    def predict(
        self, policy: Policy, eval_set: EvalSet, rows: list[dict[str, Any]], budget: int, on_done: Progress
    ) -> list[str]:
        """One prediction per row, in order."""
        ...


@dataclass
class InProcess:
    """Greedy generation with the loaded policy, ``batch_size`` prompts at a time."""

    batch_size: int = 8

    def record(self) -> dict[str, Any]:
        return {"kind": "model"}

    def rows(self, policy: Policy, eval_set: EvalSet) -> list[dict[str, Any]]:
        return load_rows(policy, eval_set)

    def predict(
        self, policy: Policy, eval_set: EvalSet, rows: list[dict[str, Any]], budget: int, on_done: Progress
    ) -> list[str]:
        from vlmr1_trainer.evaluation import generate

        return generate.greedy_generate(
            policy.model, policy.processor, rows, batch_size=self.batch_size, max_new_tokens=budget, on_batch=on_done
        )


@dataclass
class FromEndpoint:
    """Greedy generation through an OpenAI-compatible chat endpoint."""

    endpoint: ChatEndpoint

    def record(self) -> dict[str, Any]:
        return {"kind": "endpoint", "endpoint": self.endpoint.base, "model": self.endpoint.resolve_model()}

    def rows(self, policy: Policy, eval_set: EvalSet) -> list[dict[str, Any]]:
        return load_rows(policy, eval_set)

    def predict(
        self, policy: Policy, eval_set: EvalSet, rows: list[dict[str, Any]], budget: int, on_done: Progress
    ) -> list[str]:
        return self.endpoint.generate(rows, max_new_tokens=budget, on_done=on_done)


@dataclass
class FromFiles:
    """Saved predictions, one file per set name, matched in order or by ``id``."""

    files: Mapping[str, PredictionsFile]
    _aligned: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def record(self) -> dict[str, Any]:
        return {"kind": "predictions", "files": {name: str(f.path) for name, f in self.files.items()}}

    def rows(self, policy: Policy, eval_set: EvalSet) -> list[dict[str, Any]]:
        from vlmr1_trainer.evaluation.predictions import align, sample_ids

        # Matched against the whole file, then cut to max_samples with the rows.
        rows = load_rows(policy, eval_set, limit=False)
        aligned = align(self.files[eval_set.name], sample_ids(rows), eval_set.jsonl)
        keep = eval_set.max_samples or len(rows)
        self._aligned[eval_set.name] = aligned[:keep]
        return rows[:keep]

    def predict(
        self, policy: Policy, eval_set: EvalSet, rows: list[dict[str, Any]], budget: int, on_done: Progress
    ) -> list[str]:
        on_done(len(rows))
        return self._aligned[eval_set.name]


def evaluate(
    policy: Policy,
    sets: Sequence[EvalSet],
    *,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    output: Path | None = None,
    progress: bool = False,
    source: PredictionSource | None = None,
) -> dict[str, float]:
    """Every set's metrics, named ``eval/<set>/<metric>``; files under ``output`` when given.
    ``source`` (default: in-process generation with ``batch_size``) produces the predictions."""
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    from vlmr1_trainer.evaluation.metrics import score_predictions

    source = source or InProcess(batch_size)
    flat: dict[str, float] = {}
    per_set: dict[str, Any] = {}
    for eval_set in sets:
        rows = source.rows(policy, eval_set)
        budget = max_new_tokens or _default_budget(policy, eval_set.task)
        with tqdm(total=len(rows), desc=f"eval {eval_set.name}", unit="sample", disable=not progress) as bar:
            completions = source.predict(policy, eval_set, rows, budget, bar.update)
        metrics, samples = score_predictions(eval_set.task, completions, rows, family=policy.family.name)
        flat |= {metric_key(eval_set.name, k): v for k, v in metrics.items()}
        per_set[eval_set.name] = {"task": eval_set.task, "jsonl": eval_set.jsonl, "metrics": metrics}
        if output is not None:
            output.mkdir(parents=True, exist_ok=True)
            _write_atomic(
                output / f"{eval_set.name}.samples.jsonl",
                "".join(json.dumps(asdict(s), ensure_ascii=False) + "\n" for s in samples),
            )
    if output is not None:
        record = {
            "checkpoint": policy.uri or None,
            "digest": policy.digest,
            "step": policy.step,
            "family": policy.family.name,
            "source": source.record(),
            "datasets": per_set,
            "metrics": flat,
        }
        _write_atomic(output / METRICS_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return flat


def _default_budget(policy: Policy, task: EvalTask) -> int:
    # The budget the policy trained with; a plain model gets the task's default.
    if policy.config is not None and policy.config.grpo.max_completion_length:
        return policy.config.grpo.max_completion_length
    return DEFAULT_MAX_COMPLETION_LENGTH[task]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
