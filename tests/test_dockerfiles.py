"""The Dockerfiles agree with the code: extras, entry points, copied paths, users, stages.

No Docker engine is needed (none is available to the tests): each Dockerfile is parsed
line by line (continuations joined, comments dropped, heredoc bodies skipped) and
checked against pyproject.toml and the source tree. Every ``*/Dockerfile`` in the
repository is covered, so the serving and operator images are checked as soon as
they land.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vlmr1_operator.settings import OperatorSettings

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted({*REPO.glob("*/Dockerfile"), *REPO.glob("Dockerfile")})
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
EXTRAS = set(PYPROJECT["project"]["optional-dependencies"])
SCRIPTS = set(PYPROJECT["project"].get("scripts", {}))
SOURCE_ROOTS = [REPO / d for d in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["where"]]

#: Build targets each image must offer (the operator picks images per accelerator).
REQUIRED_STAGES = {"trainer_image/Dockerfile": {"cuda", "ascend"}}
#: Environment the trainer's runtime stages must set: the operator sets the same in pods,
#: and `docker run` without the operator must behave alike.
TRAINER_ENV = {"VLMR1_CACHE_DIR": "/var/lib/vlmr1/cache", "HF_HOME": "/var/lib/vlmr1/hf"}
ROOT_USERS = {"root", "0"}
#: A project install with extras: `.[a,b]`, `/src[a]`, `vlmr1[a]`, quoted or not.
EXTRAS_RE = re.compile(r"""(?:^|[\s'"=])(?:\.|\.?/[\w./-]*|vlmr1)\[([^\]\s'"]+)\]""")
SECRET_NAME_RE = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|ACCESS_KEY|API_KEY)", re.IGNORECASE)
HEREDOC_RE = re.compile(r"<<-?\s*['\"]?(\w+)['\"]?")
#: The dependency layers' one-line pyproject reader names its extras after the script:
#: ``python -c '...print(...))' trainer gpu > /tmp/requirements...``.
READER_EXTRAS_RE = re.compile(r"\)\)'((?:\s+[\w-]+)+)\s*>\s*/tmp/requirements")
VERSION = PYPROJECT["project"]["version"]
#: The OCI labels every runtime stage sets from build arguments (tests/images checks the values).
LABELS = {
    "org.opencontainers.image.version": "${VLMR1_VERSION}",
    "org.opencontainers.image.revision": "${REVISION}",
    "org.opencontainers.image.source": "${SOURCE_URL}",
}


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    index: int
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse(path: Path) -> list[Instruction]:
    """Logical instructions: continuation lines joined, comments and heredoc bodies dropped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[Instruction] = []
    i = 0
    while i < len(lines):
        start, text = i + 1, lines[i].strip()
        i += 1
        if not text or text.startswith("#"):
            continue
        while text.endswith("\\") and i < len(lines):
            nxt = lines[i].strip()
            i += 1
            if nxt.startswith("#"):  # comment lines inside a continued instruction are dropped
                text = text[:-1] + " \\"
                continue
            text = text[:-1].rstrip() + " " + nxt
        heredoc = HEREDOC_RE.search(text) if text.split(None, 1)[0].upper() in ("RUN", "COPY", "ADD") else None
        if heredoc:  # skip the body up to the terminator line
            while i < len(lines) and lines[i].strip() != heredoc.group(1):
                i += 1
            i += 1
        keyword, _, args = text.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
    return out


def stages(path: Path) -> list[Stage]:
    found: list[Stage] = []
    for ins in parse(path):
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            found.append(Stage(len(found), words[0], name))
        elif found:
            found[-1].instructions.append(ins)
    return found


def flags_and_words(args: str) -> tuple[dict[str, str], list[str]]:
    """``--from=x --chown=1:1 a b c`` -> ({from: x, chown: 1:1}, [a, b, c]); JSON form too."""
    words = shlex.split(args)
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    rest = " ".join(words)
    if rest.startswith("["):
        return flags, list(json.loads(rest))
    return flags, words


def runtime_stages(path: Path) -> list[Stage]:
    """Stages no other stage builds on or copies from: the images one builds with --target."""
    all_stages = stages(path)
    used = {s.base for s in all_stages}
    for stage in all_stages:
        for ins in stage.instructions:
            used.update(re.findall(r"--from=(\S+)", ins.args))
            used.update(re.findall(r"--mount=\S*\bfrom=([^,\s]+)", ins.args))
    return [s for s in all_stages if (s.name or str(s.index)) not in used and str(s.index) not in used]


def env_of(stage: Stage) -> dict[str, str]:
    """ENV values set in a stage (later instructions win); values are not expanded."""
    env: dict[str, str] = {}
    for ins in stage.all("ENV"):
        words = shlex.split(ins.args)
        if words and "=" not in words[0]:  # legacy form: ENV KEY value with spaces
            env[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            key, _, value = word.partition("=")
            env[key] = value
    return env


def build_args(path: Path) -> dict[str, str]:
    """Default of every ARG in the file (for resolving ``$NAME`` in extras)."""
    values = {}
    for ins in parse(path):
        if ins.keyword == "ARG":
            key, _, value = ins.args.partition("=")
            values[key.strip()] = value.strip().strip("\"'")
    return values


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


@pytest.fixture(params=DOCKERFILES, ids=rel)
def dockerfile(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


def test_trainer_dockerfile_is_covered() -> None:
    assert REPO / "trainer_image" / "Dockerfile" in DOCKERFILES


def test_required_stages_exist(dockerfile: Path) -> None:
    names = {s.name for s in stages(dockerfile)}
    assert stages(dockerfile), "no FROM instruction"
    missing = REQUIRED_STAGES.get(rel(dockerfile), set()) - names
    assert not missing, f"{rel(dockerfile)} lacks build targets {sorted(missing)}"
    for stage in runtime_stages(dockerfile):
        assert stage.name, (
            f"{rel(dockerfile)}: final stage #{stage.index} ({stage.base}) needs a name to be built with --target"
        )


def test_pip_extras_exist_in_pyproject(dockerfile: Path) -> None:
    args = build_args(dockerfile)
    named: set[str] = set()
    for ins in parse(dockerfile):
        if ins.keyword != "RUN" or "pip install" not in ins.args:
            continue
        for group in EXTRAS_RE.findall(ins.args):
            resolved = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), group)
            assert "$" not in resolved, f"{rel(dockerfile)}:{ins.line}: cannot resolve extras {group!r}"
            named.update(e.strip() for e in resolved.split(",") if e.strip())
    for ins in parse(dockerfile):
        if ins.keyword == "RUN":
            for group in READER_EXTRAS_RE.findall(ins.args):
                named.update(group.split())
    unknown = named - EXTRAS
    assert not unknown, f"{rel(dockerfile)} installs extras {sorted(unknown)}; pyproject has {sorted(EXTRAS)}"
    if rel(dockerfile) == "trainer_image/Dockerfile":
        assert {"trainer", "gpu", "ascend"} <= named


def test_entrypoint_exists_in_source_tree(dockerfile: Path) -> None:
    for stage in runtime_stages(dockerfile):
        entrypoints = stage.all("ENTRYPOINT")
        assert entrypoints, f"{rel(dockerfile)}: stage {stage.name} has no ENTRYPOINT of its own"
        argv = json.loads(entrypoints[-1].args)  # exec form: signals reach the process
        assert isinstance(argv, list) and argv, f"{rel(dockerfile)}: ENTRYPOINT must be the JSON exec form"
        if argv[0] in ("python", "python3") and argv[1:2] == ["-m"]:
            module = argv[2]
            homes = [root / module for root in SOURCE_ROOTS if (root / module / "__init__.py").is_file()]
            assert homes, f"{rel(dockerfile)}: ENTRYPOINT module {module} is not a package under {SOURCE_ROOTS}"
            assert (homes[0] / "__main__.py").is_file(), f"{module} has no __main__.py for python -m"
        else:
            assert argv[0] in SCRIPTS, f"{rel(dockerfile)}: ENTRYPOINT {argv} is neither python -m nor a vlmr1 script"


def test_runtime_user_is_not_root(dockerfile: Path) -> None:
    for stage in runtime_stages(dockerfile):
        users = stage.all("USER")
        assert users, f"{rel(dockerfile)}: stage {stage.name} never sets USER (it would run as root)"
        user = users[-1].args.split(":")[0].strip()
        assert user not in ROOT_USERS, f"{rel(dockerfile)}: stage {stage.name} runs as {user}"


def test_trainer_runs_as_the_operators_uid_with_its_cache_paths() -> None:
    """The trainer pods run as OperatorSettings.run_as_user; the image's files must be theirs."""
    path = REPO / "trainer_image" / "Dockerfile"
    uid = str(OperatorSettings().run_as_user)
    for stage in runtime_stages(path):
        assert stage.all("USER")[-1].args.split(":")[0] == uid, stage.name
        env = env_of(stage)
        assert {k: env.get(k) for k in TRAINER_ENV} == TRAINER_ENV, stage.name
        assert stage.all("WORKDIR"), f"stage {stage.name} has no WORKDIR"
        chowned = " ".join(i.args for i in stage.all("RUN") if "chown" in i.args)
        assert f"{uid}:{uid}" in chowned and "/var/lib/vlmr1" in chowned, stage.name


def test_copy_sources_exist(dockerfile: Path) -> None:
    """Every file COPY/ADD takes from the build context (the repository root) exists."""
    for ins in parse(dockerfile):
        if ins.keyword not in ("COPY", "ADD"):
            continue
        flags, words = flags_and_words(ins.args)
        if "from" in flags:
            continue
        for source in words[:-1]:
            if re.match(r"^[a-z]+://", source):
                continue
            matches = list(REPO.glob(source)) if any(c in source for c in "*?[") else [REPO / source]
            assert any(m.exists() for m in matches), f"{rel(dockerfile)}:{ins.line}: COPY source {source} missing"


def test_no_secrets_or_hard_coded_indexes(dockerfile: Path) -> None:
    """Credentials come from Secrets at run time; package indexes only from build arguments."""
    for ins in parse(dockerfile):
        if ins.keyword in ("ARG", "ENV"):
            for word in shlex.split(ins.args):
                name, _, value = word.partition("=")
                assert not (SECRET_NAME_RE.search(name) and value), f"{rel(dockerfile)}:{ins.line}: {name} baked in"
        if ins.keyword == "RUN":
            assert not re.search(r"(--(extra-)?index-url|-i)[ =]+['\"]?https?://", ins.args), (
                f"{rel(dockerfile)}:{ins.line}: hard-coded package index; take it from a build argument"
            )


def test_base_images_are_build_arguments_defaulting_to_upstream(dockerfile: Path) -> None:
    """Every base is chosen by a build argument (the tests pass a Debian-made one); the defaults
    stay the real upstream images users build on."""
    args = build_args(dockerfile)
    names = {s.name for s in stages(dockerfile)}
    for stage in stages(dockerfile):
        if stage.base == "scratch" or stage.base in names:
            continue
        refs = re.findall(r"\$\{?(\w+)\}?", stage.base)
        assert refs, f"{rel(dockerfile)}: stage {stage.name} has a fixed base {stage.base}; make it a build argument"
        for ref in refs:
            default = args.get(ref, "")
            assert default and "localhost" not in default, f"{rel(dockerfile)}: ARG {ref} needs an upstream default"


def test_runtime_stages_label_version_revision_and_source(dockerfile: Path) -> None:
    assert build_args(dockerfile).get("VLMR1_VERSION") == VERSION, f"{rel(dockerfile)}: VLMR1_VERSION default"
    for stage in runtime_stages(dockerfile):
        labels = " ".join(i.args for i in stage.all("LABEL"))
        for key, value in LABELS.items():
            assert f'{key}="{value}"' in labels, f"{rel(dockerfile)}: stage {stage.name} lacks label {key}"
        declared = {i.args.partition("=")[0] for i in stage.all("ARG")}
        assert {"VLMR1_VERSION", "REVISION", "SOURCE_URL"} <= declared, f"{rel(dockerfile)}: {stage.name}"


def test_dependency_layers_come_before_the_sources() -> None:
    """The CPU images install their dependencies from pyproject.toml and constraints.txt alone,
    so a code change rebuilds only the wheel layers (a warm CI build takes seconds)."""
    for path, stage_name in [
        ("operator/Dockerfile", "deps"),
        ("trainer_image/Dockerfile", "cpu-deps"),
        ("serving_image/Dockerfile", "transformers-deps"),
    ]:
        (stage,) = [s for s in stages(REPO / path) if s.name == stage_name]
        copies = [flags_and_words(i.args)[1][:-1] for i in stage.all("COPY")]
        assert copies == [["/src/pyproject.toml", "/src/constraints.txt"]], (path, copies)
        assert any(READER_EXTRAS_RE.search(i.args) for i in stage.all("RUN")), path


def test_every_default_serving_image_is_a_target_of_the_serving_dockerfile() -> None:
    """The operator's default image per engine (…:VERSION-<key>) is built by `--target <key>`:
    the header's build command names it, and each engine stage runs the shared setup script
    (Ascend stages with the CANN scripts, so the engine sees CANN's environment)."""
    from vlmr1_operator.settings import DEFAULT_SERVING_IMAGES

    path = REPO / "serving_image" / "Dockerfile"
    by_name = {s.name: s for s in stages(path)}
    text = path.read_text(encoding="utf-8")
    for key, image in DEFAULT_SERVING_IMAGES.items():
        assert image.endswith(f":{VERSION}-{key}"), image
        assert key in by_name, f"serving_image/Dockerfile has no --target {key} for {image}"
        assert re.search(rf"--target {re.escape(key)}\s+-t {re.escape(image)}\s+\.", text), f"header lacks {key}"
        if key == "transformers":
            continue
        runs = " ".join(i.args for i in by_name[key].all("RUN"))
        ascend = key != "vllm"
        expected = "engine-image-setup.sh $ASCEND_ENV_SCRIPTS" if ascend else "engine-image-setup.sh"
        assert expected in runs, key
        assert ("VLMR1_ENGINE_ENV_FILE" in env_of(by_name[key])) is ascend, key
