"""VLM-R1 JSONL datasets as TRL GRPO rows, with images opened lazily.

A VLM-R1 line is ``{"image": "a.jpg" | ["a.jpg", "b.jpg"], "conversations":
[{"from": "human", "value": "<image>…"}, {"from": "gpt", "value": "…"}],
"accu_reward_method": "…"?}``. Loading validates every line up front (JSON, a human
and a gpt turn, image paths that exist and whose header PIL can read) so bad data is
reported with its file and line before training starts; pixels are decoded only when
a row is read. ``on_bad_sample="skip"`` turns each problem into a warning and a count
in :class:`LoadReport` instead of an error; nothing is dropped silently.

Each row has the columns TRL's GRPOTrainer and the rewards read: ``prompt`` (chat
messages with one ``{"type": "image"}`` placeholder per image, which TRL fills from
``images``), ``images`` (PIL images), ``solution`` (``"<answer> … </answer>"``, as
VLM-R1 builds it), ``accu_reward_method``, ``problem`` and ``image_size`` (the
original ``[W, H]`` of the first image, for ``rec_iou``'s rescale).

This module imports neither torch nor transformers; PIL is imported when images are.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vlmr1_core.errors import UserError
from vlmr1_trainer.rewards._text import first_block
from vlmr1_trainer.rewards.accuracy import METHODS

logger = logging.getLogger(__name__)

#: VLM-R1's question template (its Qwen module's default); the trainer's vlm/ package
#: passes its own per task and model.
DEFAULT_QUESTION_TEMPLATE = (
    "{Question} First output the thinking process in <think> </think> tags and then output the final answer in "
    "<answer> </answer> tags."
)
#: Smallest side VLM-R1 lets an image have; smaller images are upscaled (Qwen2.5-VL's patch merge is 28 px).
MIN_IMAGE_SIDE = 28
#: Accuracy methods a dataset may name: VLM-R1's (``llm`` needs an external judge and is
#: not offered) and our reward names for the same methods.
KNOWN_METHODS = frozenset(METHODS)

OnBadSample = Literal["error", "skip"]

#: A hook the trainer adds to every row: ``(sample, decoded images, row) -> extra columns``.
#: It may raise BadSampleError (a prompt over the length limit, say) like any bad sample.
RowHook = Callable[["Sample", list[Any], dict[str, Any]], dict[str, Any]]


def default_question_template(problem: str) -> str:
    return DEFAULT_QUESTION_TEMPLATE.format(Question=problem)


class BadSampleError(UserError, ValueError):
    """A sample that cannot be used; the message names the file and line."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(reason, file=path, line=line)
        self.path, self.reason = path, reason


class DataFileError(UserError, FileNotFoundError):
    """A dataset file that cannot be opened (a FileNotFoundError, for callers that catch one)."""


class NoSamplesError(UserError, ValueError):
    """Every sample of a dataset was skipped as bad (or it has none)."""


@dataclass(frozen=True)
class DataSource:
    """One JSONL file, the folder its image paths are relative to, and its accuracy method."""

    jsonl: Path
    image_root: Path | None = None
    reward_method: str | None = None

    @property
    def images(self) -> Path:
        return self.image_root if self.image_root is not None else self.jsonl.parent


def parse_sources(
    data_files: str, image_folders: str | None = None, reward_methods: str | None = None
) -> list[DataSource]:
    """VLM-R1's colon-separated form: ``a.jsonl:b.jsonl``, ``imgs_a:imgs_b``, ``default:mcq``.

    >>> [(s.jsonl.name, s.images.name, s.reward_method) for s in parse_sources("a.jsonl:b.jsonl", "x:y", "mcq:math")]
    [('a.jsonl', 'x', 'mcq'), ('b.jsonl', 'y', 'math')]
    """
    files = data_files.split(":")
    folders: list[str | None] = list(image_folders.split(":")) if image_folders else [None] * len(files)
    methods: list[str | None] = list(reward_methods.split(":")) if reward_methods else [None] * len(files)
    if len(folders) != len(files):
        raise ValueError(f"{len(files)} data files but {len(folders)} image folders; give one folder per file")
    if len(methods) != len(files):
        raise ValueError(f"{len(files)} data files but {len(methods)} reward methods; give one method per file")
    return [
        DataSource(Path(f), Path(d) if d else None, m or None) for f, d, m in zip(files, folders, methods, strict=True)
    ]


def sources_from_specs(specs: Sequence[Any]) -> list[DataSource]:
    """DataSources from TrainerConfig ``datasets`` entries whose uris are already local paths."""
    return [DataSource(Path(s.jsonl), Path(s.image_root) if s.image_root else None, s.reward_method) for s in specs]


@dataclass(frozen=True)
class Sample:
    """One validated VLM-R1 line; images are paths, not pixels."""

    source: Path
    line: int
    image_paths: tuple[Path, ...]
    problem: str
    solution: str
    accu_reward_method: str
    image_size: tuple[int, int] | None = None
    target: str = ""
    """The whole gpt turn as written: what supervised fine-tuning trains the model to answer."""
    extra: dict[str, Any] = field(default_factory=dict)
    """The line's other top-level fields (an ``id``, a task's own ground truth): passed to the
    rewards as dataset columns, as TRL passes a dataset's columns."""


@dataclass
class LoadReport:
    """What loading (and later, reading) found: counted for the run summary."""

    loaded: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)

    def record(self, error: BadSampleError) -> None:
        self.skipped += 1
        self.problems.append(str(error))
        logger.warning("skipping bad sample %s", error)

    def summary(self) -> str:
        return f"{self.loaded} samples loaded, {self.skipped} bad samples skipped"


def _turn(conversations: Any, roles: tuple[str, ...], start: int = 0) -> tuple[int, Any] | None:
    if not isinstance(conversations, list):
        return None
    for i in range(start, len(conversations)):
        turn = conversations[i]
        if isinstance(turn, Mapping) and turn.get("from") in roles:
            return i, turn.get("value")
    return None


def _header_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:  # reads the header only
            width, height = image.size
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ValueError(f"image {path} cannot be read: {exc}") from exc
    return width, height


#: Fields of a data line that become the sample's own attributes rather than extra columns.
_PARSED_FIELDS = frozenset({"image", "conversations", "accu_reward_method"})


def parse_line(source: DataSource, line: int, text: str, *, check_images: bool = True) -> Sample:
    """One JSONL line as a Sample; raises BadSampleError naming file and line."""
    path = source.jsonl
    try:
        item = json.loads(text)
    except ValueError as exc:
        raise BadSampleError(path, line, f"not valid JSON: {exc}") from exc
    if not isinstance(item, dict):
        raise BadSampleError(path, line, f"expected a JSON object, got {type(item).__name__}")
    human = _turn(item.get("conversations"), ("human", "user"))
    if human is None or not isinstance(human[1], str):
        raise BadSampleError(path, line, "no human turn with a string value in 'conversations'")
    answer = _turn(item["conversations"], ("gpt", "assistant"), human[0] + 1)
    if answer is None:
        raise BadSampleError(path, line, "no gpt turn after the human turn in 'conversations'")
    value = answer[1] if isinstance(answer[1], str) else str(answer[1])
    block = first_block(value)
    # VLM-R1's solution: answer tags removed and the text re-wrapped, one space each side. A turn
    # written as a whole completion (<think>...</think><answer>...</answer>, SFT data) keeps only
    # its answer block, so the same file serves both methods.
    solution = block.strip() if block is not None else value.replace("<answer>", "").replace("</answer>", "").strip()
    method = item.get("accu_reward_method", source.reward_method) or "default"
    if method not in KNOWN_METHODS:
        raise BadSampleError(
            path, line, f"unknown accu_reward_method {method!r}; known: {', '.join(sorted(KNOWN_METHODS))}"
        )
    raw = item.get("image")
    if raw is None:
        names: list[str] = []
    elif isinstance(raw, str):
        names = [raw]
    elif isinstance(raw, list) and all(isinstance(n, str) for n in raw):
        names = list(raw)
    else:
        raise BadSampleError(path, line, "'image' must be a path or a list of paths")
    paths = tuple(source.images / n for n in names)
    size = None
    if check_images:
        for i, p in enumerate(paths):
            if not p.is_file():
                raise BadSampleError(path, line, f"image {p} does not exist")
            try:
                header = _header_size(p)
            except ValueError as exc:
                raise BadSampleError(path, line, str(exc)) from exc
            if i == 0:
                size = header
    return Sample(
        source=path,
        line=line,
        image_paths=paths,
        problem=human[1].replace("<image>", ""),
        solution=f"<answer> {solution} </answer>",
        accu_reward_method=method,
        image_size=size,
        target=value,
        extra={k: v for k, v in item.items() if k not in _PARSED_FIELDS},
    )


def load_samples(
    sources: Sequence[DataSource], on_bad_sample: OnBadSample = "error", *, check_images: bool = True
) -> tuple[list[Sample], LoadReport]:
    """Every sample of every source, in order, with the report of what was skipped."""
    samples: list[Sample] = []
    report = LoadReport()
    for source in sources:
        try:
            stream = source.jsonl.open(encoding="utf-8")
        except OSError as exc:
            raise DataFileError(f"dataset file {source.jsonl} cannot be opened: {exc.strerror or exc}") from exc
        with stream:
            for number, text in enumerate(stream, start=1):
                if not text.strip():
                    continue  # blank lines (often a trailing one) are not samples
                try:
                    samples.append(parse_line(source, number, text, check_images=check_images))
                except BadSampleError as exc:
                    if on_bad_sample == "error":
                        raise
                    report.record(exc)
    report.loaded = len(samples)
    return samples, report


def open_image(path: Path) -> Any:
    """The image as RGB, upscaled as VLM-R1 does when a side is below 28 px."""
    from PIL import Image

    with Image.open(path) as raw:
        image = raw.convert("RGB")
    width, height = image.size
    if width < MIN_IMAGE_SIDE or height < MIN_IMAGE_SIDE:
        # Keep the aspect ratio: the shorter side becomes 28 (VLM-R1's int() truncation).
        if width < height:
            size = (MIN_IMAGE_SIDE, int(height * (MIN_IMAGE_SIDE / width)))
        else:
            size = (int(width * (MIN_IMAGE_SIDE / height)), MIN_IMAGE_SIDE)
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


#: Columns every row has (the family's row hook may add more, such as input_size).
_ROW_COLUMNS = frozenset({"prompt", "images", "problem", "solution", "accu_reward_method", "image_size", "input_size"})


class VLMR1Dataset(Sequence[dict[str, Any]]):
    """Map-style dataset of TRL rows; ``dataset[i]`` decodes sample i's images.

    An image that passed the header check but fails to decode is a bad sample too:
    with ``on_bad_sample="error"`` reading raises BadSampleError; with ``"skip"`` it is
    counted and the next good sample is returned in its place (an index cannot vanish
    from a sampler's plan mid-epoch).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        question_template: Callable[[str], str] = default_question_template,
        on_bad_sample: OnBadSample = "error",
        report: LoadReport | None = None,
        row_hook: RowHook | None = None,
    ) -> None:
        self.samples = list(samples)
        self.question_template = question_template
        self.on_bad_sample = on_bad_sample
        self.report = report if report is not None else LoadReport(loaded=len(self.samples))
        self.row_hook = row_hook
        # Every row has every column (TRL reads the keys of a batch's first row), None where a
        # line lacks one; a field named like a built-in column is the built-in's.
        names = {k for sample in self.samples for k in sample.extra}
        self.extra_columns = sorted(names - _ROW_COLUMNS)

    @classmethod
    def from_sources(
        cls,
        sources: Sequence[DataSource],
        *,
        question_template: Callable[[str], str] = default_question_template,
        on_bad_sample: OnBadSample = "error",
        check_images: bool = True,
        row_hook: RowHook | None = None,
    ) -> VLMR1Dataset:
        samples, report = load_samples(sources, on_bad_sample, check_images=check_images)
        if not samples:
            raise NoSamplesError(
                f"no usable samples in {', '.join(str(s.jsonl) for s in sources)} ({report.summary()})"
            )
        return cls(
            samples, question_template=question_template, on_bad_sample=on_bad_sample, report=report, row_hook=row_hook
        )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        for attempt in range(len(self.samples)):
            sample = self.samples[(index + attempt) % len(self.samples)]
            try:
                return self.row(sample)
            except BadSampleError as exc:
                if self.on_bad_sample == "error":
                    raise
                self.report.record(exc)
        raise RuntimeError("no sample in the dataset has readable images")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self[i]

    def row(self, sample: Sample) -> dict[str, Any]:
        """The TRL row of one sample (decodes its images)."""
        images = []
        for path in sample.image_paths:
            try:
                images.append(open_image(path))
            except (OSError, ValueError) as exc:
                raise BadSampleError(sample.source, sample.line, f"image {path} cannot be decoded: {exc}") from exc
        content: list[dict[str, Any]] = [{"type": "image"} for _ in images]
        content.append({"type": "text", "text": self.question_template(sample.problem)})
        row = {
            "prompt": [{"role": "user", "content": content}],
            "images": images,
            "problem": sample.problem,
            "solution": sample.solution,
            "accu_reward_method": sample.accu_reward_method,
            "image_size": list(sample.image_size) if sample.image_size else None,
        }
        for name in self.extra_columns:
            row[name] = sample.extra.get(name)
        if self.row_hook is not None:
            row.update(self.row_hook(sample, images, row))
        return row


class _RowsByIndex:
    """``datasets`` transform: a batch of sample indices -> the batch of TRL rows (picklable)."""

    def __init__(self, dataset: VLMR1Dataset) -> None:
        self.dataset = dataset

    def __call__(self, batch: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
        rows = [self.dataset[i] for i in batch["index"]]
        return {key: [row[key] for row in rows] for key in rows[0]} if rows else {}


def to_hf_dataset(dataset: VLMR1Dataset) -> Any:
    """A ``datasets.Dataset`` view for TRL's GRPOTrainer (which accepts no other type).

    Arrow stores only the sample indices; a ``with_transform`` builds each row on access,
    so images are still decoded lazily, per batch, in the dataloader.
    """
    from datasets import Dataset  # type: ignore[import-untyped]

    return Dataset.from_dict({"index": list(range(len(dataset)))}).with_transform(_RowsByIndex(dataset))
