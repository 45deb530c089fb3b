"""What a training run checks before it loads any weights, cheapest first.

The spec itself was validated when it was read (the GRPOJob or TrainerConfig models). Then,
here: the reward names and parameters (microseconds; references imported), then every data
file, training and evaluation sets alike — each sample parsed, each image's header read
(seconds) — and the probe batch that references and remote rewards must score. Only then does
the trainer load the model, which takes minutes for a large one from a hub: a misspelt reward, a
reward that breaks its contract or a bad dataset line must not wait for that, nor, for an
evaluation set, for the first checkpoint.

Every problem is a :class:`~vlmr1_core.errors.UserError` naming the spec field
(``spec.datasets[0].jsonl``) or the data file and line, with the fix; ``vlmr1 run`` adds the
manifest's file and line to a spec field. ``vlmr1 eval`` checks its ``--data`` files here too.
Imports neither torch nor transformers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vlmr1_core.config import TrainerConfig
from vlmr1_core.errors import UserError
from vlmr1_core.uri import resolve_local_path
from vlmr1_trainer.data import (
    BadSampleError,
    DataFileError,
    DataSource,
    NoSamplesError,
    OnBadSample,
    VLMR1Dataset,
    default_question_template,
)

if TYPE_CHECKING:
    from vlmr1_trainer.rewards.setup import JobReward

__all__ = [
    "CheckedInputs",
    "check_checkpoint_store",
    "check_evaluation_data",
    "check_inputs",
    "check_model_digest",
    "check_rewards",
    "load_dataset",
    "local_source",
]

#: How to get past a bad training sample; evaluation sets have no skip (every checkpoint must
#: be scored on the same samples).
SKIP_FIX = "correct or remove the line, or set spec.onBadSample: skip to train without bad samples"
EVAL_FIX = "correct or remove the line"


@dataclass
class CheckedInputs:
    """What the checks produced, for the trainer to use rather than build again."""

    rewards: list[JobReward]
    """The configured rewards, built with their parameters, in spec order (not yet bounded:
    :func:`vlmr1_trainer.rewards.setup.scored_rewards` does that for training)."""
    dataset: VLMR1Dataset
    """Every training sample, parsed; the family's row hook is added once its processor loads."""


def check_inputs(
    config: TrainerConfig, question_template: Callable[[str], str] = default_question_template
) -> CheckedInputs:
    """Rewards, then training data, then evaluation data, then a pinned model's digest; the first
    problem is raised. ``question_template`` is the model family's, for the dataset's prompts."""
    rewards = check_rewards(config)
    sources = [
        local_source(spec.jsonl, spec.image_root, spec.reward_method, field=f"spec.datasets[{i}]")
        for i, spec in enumerate(config.datasets)
    ]
    dataset = load_dataset(
        sources,
        on_bad_sample=config.on_bad_sample,
        question_template=question_template,
        field="spec.datasets",
        fix=SKIP_FIX,
    )
    if config.method == "sft":
        require_targets(dataset, config.on_bad_sample)
    else:
        from vlmr1_trainer.rewards.setup import probe_rewards

        probe_rewards(rewards, config.rewards, dataset.samples, config.scoring.timeout_seconds)
    check_evaluation_data(config)
    check_model_digest(config)
    return CheckedInputs(rewards=rewards, dataset=dataset)


def require_targets(dataset: VLMR1Dataset, on_bad_sample: OnBadSample) -> None:
    """SFT learns each sample's answer turn: an empty one is a bad sample, found here rather
    than when its batch comes up mid-training (dropped and counted with onBadSample: skip)."""
    kept = []
    for sample in dataset.samples:
        if sample.target.strip():
            kept.append(sample)
            continue
        error = BadSampleError(
            sample.source, sample.line, "the gpt turn is empty: supervised fine-tuning has no target to learn"
        )
        if on_bad_sample == "error":
            raise error.at(fix=SKIP_FIX)
        dataset.report.record(error)
    if not kept:
        raise NoSamplesError(
            f"no sample has an answer turn to learn ({dataset.report.summary()})",
            field="spec.datasets",
            fix="give every sample a non-empty gpt turn",
        )
    dataset.report.loaded = len(kept)
    dataset.samples = kept


def check_rewards(config: TrainerConfig) -> list[JobReward]:
    """The job's reward code on the import path, every built-in name known to this trainer's
    registry, then every reward built (references imported, remote rewards given their token)."""
    from vlmr1_trainer.rewards.setup import build_rewards

    return build_rewards(config)


def check_model_digest(config: TrainerConfig) -> None:
    """With ``model.digest``: the starting model is a vlmr1 checkpoint that verifies against its
    manifest and has exactly that digest (an s3 checkpoint is downloaded here, once: loading
    reuses the download). Reads manifests and hashes files; loads no weights."""
    from vlmr1_core.checkpoints import MANIFEST, verify_checkpoint
    from vlmr1_trainer.storage import resolve_model

    expected, uri = config.model.digest, config.model.uri
    if expected is None:
        return
    source = resolve_model(uri, config.model.revision)
    path = Path(source.pretrained)
    if source.kind in ("hub", "builtin") or not (path / MANIFEST).is_file():
        raise UserError(
            f"model.digest pins a vlmr1 checkpoint, but {uri} is not one (no {MANIFEST})",
            field="spec.model.digest",
            fix="point model.uri at a checkpoint-<step> folder, or remove model.digest",
        )
    result = verify_checkpoint(path)
    if not result.ok:
        raise UserError(
            f"the starting checkpoint {uri} does not verify against its manifest: {'; '.join(result.problems())}",
            field="spec.model.uri",
            fix="restore the checkpoint's files, or pin another checkpoint",
        )
    if result.digest != expected:
        raise UserError(
            f"the starting checkpoint {uri} has digest {result.digest}, not the pinned {expected}",
            field="spec.model.digest",
            fix="pin the digest `vlmr1 checkpoints verify` prints for it, or point model.uri at the checkpoint "
            "that has the pinned one",
        )


def check_checkpoint_store(config: TrainerConfig, *, write: bool) -> None:
    """For an ``s3://`` checkpoint.uri: credentials exist, the bucket lists, and (``write``) an
    object can be written and deleted under the prefix; a UserError naming spec.checkpoint.uri
    otherwise. Nothing for other uris."""
    uri = config.checkpoint.uri
    if not uri or not uri.startswith("s3://"):
        return
    from vlmr1_core.checkpoint_store import split_s3
    from vlmr1_core.objectstore import S3Store, require_credentials

    bucket, prefix = split_s3(uri)
    try:
        require_credentials(uri)
        store = S3Store(bucket)
        store.list_prefixes(prefix)
        if write:
            store.put_probe(prefix)
    except UserError as exc:
        exc.at(field="spec.checkpoint.uri")
        raise


def check_evaluation_data(config: TrainerConfig) -> None:
    """Every evaluation set's samples parse and their images exist (they are scored later, at
    each checkpoint, and a bad one must not end a run after its first save)."""
    if config.evaluation is None:
        return
    for i, spec in enumerate(config.evaluation.datasets):
        field = f"spec.evaluation.datasets[{i}]"
        source = local_source(spec.jsonl, spec.image_root, None, field=field)
        load_dataset([source], on_bad_sample="error", field=field, fix=EVAL_FIX)


def local_source(
    jsonl: str, image_root: str | None, reward_method: str | None, *, field: str, option: bool = False
) -> DataSource:
    """A data file and its image folder as local paths (pvc:// mapped, s3:// downloaded), both
    present; else a UserError naming ``field`` (``spec.datasets[0]``; with ``option``, ``field``
    is a command-line option such as ``--data`` and names both parts)."""
    jsonl_field = field if option else f"{field}.jsonl"
    images_field = field if option else f"{field}.imageRoot"
    path = _local_path(jsonl, jsonl_field)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise DataFileError(f"dataset file {path} {what}", field=jsonl_field, fix="correct the path")
    images = _local_path(image_root, images_field) if image_root else None
    if images is not None and not images.is_dir():
        what = "is not a folder" if images.exists() else "does not exist"
        raise DataFileError(f"image folder {images} {what}", field=images_field, fix="correct the path")
    return DataSource(path, images, reward_method)


def load_dataset(
    sources: list[DataSource],
    *,
    on_bad_sample: OnBadSample,
    field: str,
    fix: str,
    question_template: Callable[[str], str] = default_question_template,
) -> VLMR1Dataset:
    """The samples of ``sources``; a bad one is a BadSampleError (file and line) with ``fix``."""
    try:
        return VLMR1Dataset.from_sources(sources, question_template=question_template, on_bad_sample=on_bad_sample)
    except BadSampleError as exc:
        exc.at(fix=fix)
        raise
    except DataFileError as exc:  # there a moment ago, unreadable now (permissions, a lost mount)
        exc.at(field=field)
        raise
    except NoSamplesError as exc:
        exc.at(field=field, fix="correct the samples (the warnings above list them)")
        raise


def _local_path(uri: str, field: str) -> Path:
    try:
        return resolve_local_path(uri)
    except UserError as exc:  # a malformed uri, an s3 object that cannot be fetched
        exc.at(field=field)
        raise
