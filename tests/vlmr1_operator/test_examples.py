"""Every file in examples/ is a valid manifest, and round-trips through the models unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vlmr1_core.api import GRPOJob, VLMService
from vlmr1_core.api.manifest import load_manifests

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))

#: The examples the foundation promises (more may exist).
REQUIRED = {
    "grpojob-rec.yaml",
    "grpojob-rec-lora.yaml",
    "grpojob-ovd.yaml",
    "grpojob-math.yaml",
    "grpojob-gui.yaml",
    "grpojob-rec-ascend.yaml",
    "vlmservice-vllm.yaml",
    "vlmservice-xllm-ascend.yaml",
    "vlmservice-dev-cpu.yaml",
}


def test_required_examples_exist() -> None:
    assert {p.name for p in EXAMPLES} >= REQUIRED


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid(path: Path) -> None:
    objs = load_manifests(path)
    assert len(objs) == 1
    expected_kind = GRPOJob if path.name.startswith("grpojob") else VLMService
    assert isinstance(objs[0], expected_kind)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_round_trips(path: Path) -> None:
    """Every field written in the file survives parsing (nothing is dropped or renamed)."""
    written = yaml.safe_load(path.read_text())
    (obj,) = load_manifests(path)
    dumped = obj.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert _subset(written, dumped), f"{path.name}: a field written in the file is lost after parsing"


def _subset(small: object, big: object) -> bool:
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and _subset(v, big[k]) for k, v in small.items())
    if isinstance(small, list):
        return isinstance(big, list) and len(small) == len(big) and all(map(_subset, small, big))
    return small == big


def test_rec_example_matches_vlm_r1_run_script() -> None:
    """grpojob-rec.yaml is VLM-R1's run_grpo_rec.sh: 8 processes, ZeRO-3, batch 1 x 2, 8 generations."""
    (job,) = load_manifests(REPO / "examples" / "grpojob-rec.yaml")
    assert isinstance(job, GRPOJob)
    spec = job.spec
    assert spec.resources.world_size == 8
    assert spec.training.zero_stage == 3
    assert (spec.training.per_device_batch_size, spec.training.gradient_accumulation_steps) == (1, 2)
    assert spec.grpo.num_generations == 8
    assert spec.grpo.max_prompt_length == 1024
    assert spec.model.resolved_family == "qwen2.5-vl"
    assert [r.name for r in spec.rewards] == ["rec_iou", "rec_format"]
