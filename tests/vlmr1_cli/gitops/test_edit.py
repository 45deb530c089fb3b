"""The surgical spec.model edit: only uri and digest change; comments, order, quoting, line breaks stay."""

from __future__ import annotations

import difflib
import stat
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmr1_cli.gitops import PromoteError
from vlmr1_cli.gitops.edit import Pin, _render, find_service, pin_model, write_atomically

NEW = Pin("pvc://vlmr1-checkpoints/rec/checkpoints/checkpoint-4", "sha256:" + "ab" * 32)
OLD_DIGEST = "sha256:" + "7b" * 32


def changes(old: str, new: str) -> tuple[list[str], list[str]]:
    """(removed lines, added lines) of a line diff, line breaks included."""
    removed, added = [], []
    for line in difflib.ndiff(old.splitlines(keepends=True), new.splitlines(keepends=True)):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return removed, added


def model_of(text: str, name: str | None = None) -> dict[str, object]:
    return find_service(text, "f.yaml", name).model


def service(model: str, head: str = "") -> str:
    return (
        f"{head}apiVersion: vlmr1.io/v1alpha1\nkind: VLMService\nmetadata:\n  name: rec\nspec:\n{model}"
        "  engine:\n    name: transformers\n  resources:\n    accelerator: cpu\n    devicesPerReplica: 0\n"
    )


def test_block_style_changes_two_values_and_keeps_comments(service_yaml: str) -> None:
    result = pin_model(service_yaml, "f.yaml", NEW)
    assert result.changed
    removed, added = changes(service_yaml, result.text)
    assert removed == [
        "    uri: pvc://vlmr1-checkpoints/old/checkpoint-1   # the served checkpoint\n",
        "    digest: sha256:7bfeb668af2219300e9f1cb7c24bea23e9eed2022b5147aeb6bf775c95197b5c\n",
    ]
    assert added == [f"    uri: {NEW.uri}   # the served checkpoint\n", f"    digest: {NEW.digest}\n"]
    assert result.service.ref == "ml/rec-dev"
    assert result.service.describe_model() == (
        "pvc://vlmr1-checkpoints/old/checkpoint-1 "
        "(sha256:7bfeb668af2219300e9f1cb7c24bea23e9eed2022b5147aeb6bf775c95197b5c)"
    )


def test_flow_style_model_changes_only_its_values() -> None:
    text = service(f"  model: {{uri: pvc://c/old, digest: {OLD_DIGEST}, family: qwen2.5-vl}}  # pinned\n")
    result = pin_model(text, "f.yaml", NEW)
    assert changes(text, result.text) == (
        [f"  model: {{uri: pvc://c/old, digest: {OLD_DIGEST}, family: qwen2.5-vl}}  # pinned\n"],
        [f"  model: {{uri: {NEW.uri}, digest: {NEW.digest}, family: qwen2.5-vl}}  # pinned\n"],
    )


def test_quoted_values_keep_their_quotes() -> None:
    text = service(f"  model:\n    uri: \"pvc://c/old\"\n    digest: '{OLD_DIGEST}'\n")
    result = pin_model(text, "f.yaml", NEW)
    assert changes(text, result.text)[1] == [f'    uri: "{NEW.uri}"\n', f"    digest: '{NEW.digest}'\n"]


def test_a_uri_that_cannot_be_plain_is_double_quoted() -> None:
    text = service(f"  model:\n    uri: pvc://c/old\n    digest: {OLD_DIGEST}\n")
    pin = Pin('pvc://c/run#1,{"x"}/checkpoint-4', NEW.digest)
    result = pin_model(text, "f.yaml", pin)
    assert '    uri: "pvc://c/run#1,{\\"x\\"}/checkpoint-4"\n' in result.text
    assert model_of(result.text)["uri"] == pin.uri


def test_crlf_line_breaks_are_kept() -> None:
    text = service("  model:  # m\n    fromJob:\n      name: rec\n    family: qwen2.5-vl\n").replace("\n", "\r\n")
    result = pin_model(text, "f.yaml", NEW)
    removed, added = changes(text, result.text)
    assert removed == ["    fromJob:\r\n", "      name: rec\r\n"]
    assert added == [f"    uri: {NEW.uri}\r\n", f"    digest: {NEW.digest}\r\n"]
    assert "\n" not in result.text.replace("\r\n", "")


def test_from_job_block_becomes_uri_and_digest_at_its_indentation() -> None:
    text = service(
        "  model:\n"
        "    # follow the job's best checkpoint\n"
        "    fromJob:   # resolved by the operator\n"
        "      name: rec-job\n"
        "      checkpoint: best  # or latest\n"
        "    family: qwen2.5-vl  # detected otherwise\n"
    )
    result = pin_model(text, "f.yaml", NEW)
    assert changes(text, result.text) == (
        [
            "    fromJob:   # resolved by the operator\n",
            "      name: rec-job\n",
            "      checkpoint: best  # or latest\n",
        ],
        [f"    uri: {NEW.uri}\n", f"    digest: {NEW.digest}\n"],
    )
    assert "    # follow the job's best checkpoint\n    uri:" in result.text
    assert result.service.describe_model() == "fromJob rec-job (best)"
    assert model_of(result.text) == {"uri": NEW.uri, "digest": NEW.digest, "family": "qwen2.5-vl"}


def test_from_job_flow_value_and_last_entry() -> None:
    text = service("  model:\n    family: qwen2.5-vl\n    fromJob: {name: rec-job, checkpoint: '40'}  # step 40\n")
    result = pin_model(text, "f.yaml", NEW)
    assert changes(text, result.text) == (
        ["    fromJob: {name: rec-job, checkpoint: '40'}  # step 40\n"],
        [f"    uri: {NEW.uri}\n", f"    digest: {NEW.digest}\n"],
    )


def test_from_job_inside_a_flow_model() -> None:
    text = service("  model: {fromJob: {name: rec-job, checkpoint: best}, family: qwen2.5-vl}\n")
    result = pin_model(text, "f.yaml", NEW)
    assert changes(text, result.text)[1] == [f"  model: {{uri: {NEW.uri}, digest: {NEW.digest}, family: qwen2.5-vl}}\n"]


def test_from_job_at_the_end_of_a_file_without_a_final_line_break() -> None:
    text = (
        "apiVersion: vlmr1.io/v1alpha1\nkind: VLMService\nmetadata:\n  name: rec\nspec:\n"
        "  resources:\n    accelerator: nvidia\n  model:\n    fromJob:\n      name: rec-job"
    )
    result = pin_model(text, "f.yaml", NEW)
    assert result.text.endswith(f"  model:\n    uri: {NEW.uri}\n    digest: {NEW.digest}\n")
    assert model_of(result.text) == {"uri": NEW.uri, "digest": NEW.digest}


def test_a_missing_digest_is_inserted_after_the_uri() -> None:
    text = service("  model:\n    uri: pvc://c/old  # no digest yet\n    family: qwen2.5-vl\n")
    result = pin_model(text, "f.yaml", NEW)
    assert changes(text, result.text) == (
        ["    uri: pvc://c/old  # no digest yet\n"],
        [f"    uri: {NEW.uri}  # no digest yet\n", f"    digest: {NEW.digest}\n"],
    )


def test_multi_document_file_edits_only_the_named_service() -> None:
    other = service(f"  model:\n    uri: pvc://c/other\n    digest: {OLD_DIGEST}\n").replace(
        "name: rec\n", "name: other\n"
    )
    target = service(f"  model:\n    uri: pvc://c/old\n    digest: {OLD_DIGEST}\n")
    text = f"# services\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n---\n{other}---\n{target}"
    with pytest.raises(PromoteError, match=r"holds 2 VLMServices \(other, rec\); pick one with --service-name"):
        pin_model(text, "f.yaml", NEW)
    with pytest.raises(PromoteError, match=r"no VLMService named 'nope' \(found: other, rec\)"):
        pin_model(text, "f.yaml", NEW, "nope")
    result = pin_model(text, "f.yaml", NEW, "rec")
    assert result.text.startswith(
        f"# services\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n---\n{other}---\n"
    )
    assert model_of(result.text, "other")["uri"] == "pvc://c/other"
    assert model_of(result.text, "rec")["uri"] == NEW.uri


def test_a_file_without_a_vlmservice_is_refused_naming_its_kinds() -> None:
    text = "apiVersion: vlmr1.io/v1alpha1\nkind: GRPOJob\nmetadata:\n  name: j\n---\napiVersion: v1\nkind: ConfigMap\n"
    with pytest.raises(
        PromoteError, match=r"f.yaml holds no VLMService of vlmr1.io/\* \(found kinds: GRPOJob, ConfigMap\)"
    ):
        pin_model(text, "f.yaml", NEW)
    foreign = service("  model:\n    uri: x\n").replace("vlmr1.io/v1alpha1", "example.com/v1")
    with pytest.raises(PromoteError, match=r"found kinds: VLMService \(example.com/v1\)"):
        pin_model(foreign, "f.yaml", NEW)


def test_invalid_yaml_is_refused_with_its_line() -> None:
    with pytest.raises(PromoteError, match=r"f.yaml:\d+: invalid YAML"):
        pin_model("kind: VLMService\nspec:\n  model: [\n", "f.yaml", NEW)


def test_an_already_pinned_model_is_unchanged() -> None:
    text = service(f"  model:\n    uri: {NEW.uri}\n    digest: {NEW.digest}\n")
    result = pin_model(text, "f.yaml", NEW)
    assert not result.changed and result.text == text


def test_an_aliased_model_is_refused() -> None:
    text = service("  model: *m\n", head=f"x: &m {{uri: pvc://c/old, digest: {OLD_DIGEST}}}\n")
    with pytest.raises(PromoteError, match=r"spec\.model is a YAML alias"):
        pin_model(text, "f.yaml", NEW)


def test_a_result_that_is_not_a_valid_vlmservice_is_refused() -> None:
    text = service(f"  model:\n    uri: pvc://c/old\n    digest: {OLD_DIGEST}\n").replace(
        "accelerator: cpu", "accelerator: quantum"
    )
    with pytest.raises(PromoteError, match=r"(?s)would not be valid.*f.yaml:\d+: spec.resources.accelerator"):
        pin_model(text, "f.yaml", NEW)


def test_a_missing_model_is_refused() -> None:
    text = "apiVersion: vlmr1.io/v1alpha1\nkind: VLMService\nmetadata:\n  name: rec\nspec:\n  port: 8000\n"
    with pytest.raises(PromoteError, match=r"VLMService rec has no spec\.model mapping"):
        pin_model(text, "f.yaml", NEW)


def test_write_atomically_keeps_the_mode_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text("old\n")
    path.chmod(0o640)
    write_atomically(path, "new\r\n")
    assert path.read_bytes() == b"new\r\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["svc.yaml"]


YAML_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


@given(value=YAML_TEXT, style=st.sampled_from([None, "'", '"']), flow=st.booleans())
def test_rendered_scalars_read_back_as_the_same_string(value: str, style: str | None, flow: bool) -> None:
    rendered = _render(value, style, flow)
    snippet = f"{{k: {rendered}}}" if flow else f"k: {rendered}\n"
    assert yaml.safe_load(snippet) == {"k": value}


URI_TAIL = st.text(st.characters(exclude_categories=("Cs", "Cc", "Z"), exclude_characters="\x85"), min_size=1)


@settings(max_examples=60, deadline=None)
@given(
    tail=URI_TAIL,
    layout=st.sampled_from(["block", "quoted", "flow", "fromJob"]),
    crlf=st.booleans(),
)
def test_any_uri_is_pinned_by_changing_only_model_lines(tail: str, layout: str, crlf: bool) -> None:
    pin = Pin("pvc://" + tail, NEW.digest)
    model = {
        "block": f"  model:\n    uri: pvc://c/old  # c\n    digest: {OLD_DIGEST}\n    family: qwen2.5-vl\n",
        "quoted": f"  model:\n    uri: 'pvc://c/old'\n    digest: \"{OLD_DIGEST}\"\n",
        "flow": f"  model: {{family: qwen2.5-vl, uri: pvc://c/old, digest: {OLD_DIGEST}}}\n",
        "fromJob": "  model:\n    fromJob:\n      name: rec\n    family: qwen2.5-vl\n",
    }[layout]
    text = service(model, head="# head\n")
    if crlf:
        text = text.replace("\n", "\r\n")
    result = pin_model(text, "f.yaml", pin)
    assert model_of(result.text)["uri"] == pin.uri and model_of(result.text)["digest"] == pin.digest
    removed, added = changes(text, result.text)
    assert all("uri" in line or "digest" in line or "fromJob" in line or "name: rec" in line for line in removed)
    assert all(line.endswith("\r\n" if crlf else "\n") for line in added)
    assert len(added) == (1 if layout == "flow" else 2)
