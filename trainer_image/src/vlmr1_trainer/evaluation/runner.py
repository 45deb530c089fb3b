"""Evaluate a loaded policy on evaluation sets: generate, score, write the results.

Results, for error analysis and for the record: ``<output>/metrics.json`` (what was
evaluated — uri, digest, step — and every metric) and ``<output>/<set>.samples.jsonl``
(one line per sample: source file:line, prediction, parsed answer, ground truth, score).
Metric names are ``eval/<set>/<metric>``, as in checkpoint manifests and GRPOJob status.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlmr1_core.config import DEFAULT_MAX_COMPLETION_LENGTH, EvalTask, TrainerConfig

if TYPE_CHECKING:
    from vlmr1_trainer.evaluation.policy import Policy

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


def load_rows(policy: Policy, eval_set: EvalSet) -> list[dict[str, Any]]:
    """The set's samples as prompt rows for the policy's family (the training prompt template
    of the set's task), each with its ``source`` (file:line) for error messages."""
    from vlmr1_core.uri import resolve_local_path
    from vlmr1_trainer.data import DataSource, VLMR1Dataset
    from vlmr1_trainer.train import FamilyRowHook, QuestionTemplate
    from vlmr1_trainer.vlm.prompts import format_question

    jsonl = resolve_local_path(eval_set.jsonl)
    images = resolve_local_path(eval_set.image_root) if eval_set.image_root else None
    template = policy.family.question_template(eval_set.task)
    dataset = VLMR1Dataset.from_sources(
        [DataSource(jsonl, images, None)],
        question_template=QuestionTemplate(template, format_question),
        row_hook=FamilyRowHook(policy.family, policy.processor, None),
    )
    samples = dataset.samples[: eval_set.max_samples] if eval_set.max_samples else dataset.samples
    return [{**dataset.row(s), "source": f"{s.source}:{s.line}"} for s in samples]


def evaluate(
    policy: Policy,
    sets: Sequence[EvalSet],
    *,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    output: Path | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Every set's metrics, named ``eval/<set>/<metric>``; files under ``output`` when given."""
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    from vlmr1_trainer.evaluation.generate import greedy_generate
    from vlmr1_trainer.evaluation.metrics import score_predictions

    flat: dict[str, float] = {}
    per_set: dict[str, Any] = {}
    for eval_set in sets:
        rows = load_rows(policy, eval_set)
        budget = max_new_tokens or _default_budget(policy, eval_set.task)
        with tqdm(total=len(rows), desc=f"eval {eval_set.name}", unit="sample", disable=not progress) as bar:
            completions = greedy_generate(
                policy.model, policy.processor, rows, batch_size=batch_size, max_new_tokens=budget, on_batch=bar.update
            )
        metrics, samples = score_predictions(eval_set.task, completions, rows)
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
            "checkpoint": policy.uri,
            "digest": policy.digest,
            "step": policy.step,
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
