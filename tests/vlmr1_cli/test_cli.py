"""The vlmr1 command line: fast start, and validate's exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_help_does_not_import_heavy_packages() -> None:
    code = (
        "import sys\n"
        "from vlmr1_cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = {'torch', 'transformers', 'trl', 'kopf', 'kubernetes', 'numpy'}\n"
        "print('LOADED', sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "LOADED []" in out.stdout
    assert "validate" in out.stdout and "crds" in out.stdout


def test_validate_exit_codes() -> None:
    good = subprocess.run(
        [sys.executable, "-m", "vlmr1_cli", "validate", str(REPO / "examples" / "grpojob-rec.yaml")],
        capture_output=True,
        text=True,
    )
    assert good.returncode == 0
    assert "GRPOJob rec-qwen25vl-3b is valid" in good.stdout
    bad_file = REPO / "tests" / "vlmr1_core" / "bad_manifests" / "vlmservice-max-below-min.yaml"
    bad = subprocess.run([sys.executable, "-m", "vlmr1_cli", "validate", str(bad_file)], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "spec.replicas.min: replicas.min must not exceed replicas.max" in bad.stderr
