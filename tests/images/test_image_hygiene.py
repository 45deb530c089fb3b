"""What is inside the built images, checked inside them (not by reading the Dockerfiles).

Each image: its size within a budget (a CUDA torch or a compiler toolchain sneaking in
would blow it), no compilers and no package-manager caches in the runtime stage, no dev
tools, no build leftovers, only the vlmr1 packages that image runs, the non-root user the
pods use, and labels naming the version and the source revision.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from typing import Any

import pytest

from .podman import REPO, Podman

VERSION = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]

#: tag -> (budget in MB, vlmr1 packages it must hold, vlmr1 packages it must not hold,
#: third-party modules it must not hold). Budgets are the measured sizes plus a margin for
#: dependency growth (docs/images.md has the numbers; sizes as podman reports them, uncompressed);
#: the trainer's CPU torch alone is ~0.9 GB.
IMAGES: dict[str, tuple[int, set[str], set[str], set[str]]] = {
    f"vlmr1/operator:{VERSION}": (
        400,
        {"vlmr1_core", "vlmr1_operator", "vlmr1_cli"},
        {"vlmr1_trainer", "vlmr1_serving", "vlmr1_devtools"},
        {"torch", "transformers", "trl", "peft", "datasets", "numpy", "PIL"},
    ),
    f"vlmr1/trainer:{VERSION}-cpu": (
        2300,
        {"vlmr1_core", "vlmr1_trainer", "vlmr1_cli"},
        {"vlmr1_operator", "vlmr1_serving", "vlmr1_devtools"},
        {"kopf", "torchvision", "vllm"},
    ),
    f"vlmr1/serving:{VERSION}-transformers": (
        1600,
        {"vlmr1_core", "vlmr1_serving"},
        {"vlmr1_operator", "vlmr1_trainer", "vlmr1_devtools", "vlmr1_cli"},
        {"trl", "peft", "datasets", "kopf", "kubernetes", "torchvision"},
    ),
}
#: Dev-only distributions (the dev extra) that no image may carry.
DEV_TOOLS = {"pytest", "hypothesis", "ruff", "mypy", "import-linter", "kubernetes-validate", "cel-python"}
COMPILERS = ["gcc", "cc", "c++", "g++", "clang", "make", "ld", "as", "nvcc", "rustc", "go"]

#: Run inside the image as root (so /root is readable): what is there, as JSON.
PROBE = r"""
import glob, importlib.metadata as md, importlib.util, json, os, shutil, sys
names = json.loads(sys.argv[1])
print(json.dumps({
    "compilers": [c for c in names["compilers"] if shutil.which(c)],
    "gcc_libs": glob.glob("/usr/lib/gcc/*/*/cc1*"),
    "apt_archives": glob.glob("/var/cache/apt/archives/*.deb"),
    "apt_lists": [p for p in glob.glob("/var/lib/apt/lists/*") if os.path.basename(p) not in ("lock", "partial")],
    "pip_caches": [p for p in glob.glob("/root/.cache/pip") + glob.glob("/home/*/.cache/pip") if os.path.isdir(p)],
    "build_leftovers": [p for p in ("/src", "/wheel", "/wheels") if os.path.exists(p)] + glob.glob("/tmp/*")
        + glob.glob("/mnt/*"),
    "present": [m for m in names["modules"] if importlib.util.find_spec(m) is not None],
    "distributions": sorted({(d.metadata["Name"] or "").lower() for d in md.distributions()}),
}))
"""


@pytest.fixture(scope="module")
def probes(podman: Podman) -> dict[str, dict[str, Any]]:
    out = {}
    for tag, (_, want, unwanted, third_party) in IMAGES.items():
        names = {"compilers": COMPILERS, "modules": sorted(want | unwanted | third_party)}
        run = podman("run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "python", tag,
                     "-c", PROBE, json.dumps(names))  # fmt: skip
        out[tag] = json.loads(run.stdout)
    return out


@pytest.mark.parametrize("tag", list(IMAGES))
def test_image_size_is_within_its_budget(podman: Podman, tag: str) -> None:
    size_mb = podman.inspect(tag)["Size"] / 1e6
    budget = IMAGES[tag][0]
    assert size_mb <= budget, f"{tag} is {size_mb:.0f} MB, over its {budget} MB budget"


@pytest.mark.parametrize("tag", list(IMAGES))
def test_no_compilers_package_caches_or_build_leftovers(probes: dict[str, dict[str, Any]], tag: str) -> None:
    probe = probes[tag]
    for key in ("compilers", "gcc_libs", "apt_archives", "apt_lists", "pip_caches", "build_leftovers"):
        assert probe[key] == [], f"{tag}: {key}: {probe[key]}"
    dev = DEV_TOOLS & set(probe["distributions"])
    assert not dev, f"{tag} carries dev tools {sorted(dev)}"


@pytest.mark.parametrize("tag", list(IMAGES))
def test_image_holds_only_the_code_it_runs(probes: dict[str, dict[str, Any]], tag: str) -> None:
    _, want, unwanted, third_party = IMAGES[tag]
    present = set(probes[tag]["present"])
    assert want <= present, f"{tag} lacks {sorted(want - present)}"
    assert not (present & (unwanted | third_party)), f"{tag} holds {sorted(present & (unwanted | third_party))}"


@pytest.mark.parametrize("tag", list(IMAGES))
def test_labels_name_the_version_and_source_and_the_user_is_the_pods(podman: Podman, tag: str) -> None:
    config = podman.inspect(tag)["Config"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # a source tree without git builds images without a revision
        assert labels["org.opencontainers.image.revision"] == head.stdout.strip()
    assert "org.opencontainers.image.source" in labels
    assert labels["org.opencontainers.image.title"].startswith("vlmr1 ")
    assert config["User"] == "1000:1000"  # OperatorSettings.run_as_user and the chart's runAsUser
