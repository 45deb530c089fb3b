"""`vlmr1 crds`: write (or check) the CRDs generated from the API models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

#: The chart's copy, written too when the chart exists (Helm installs CRDs from there).
CHART_CRDS = Path("helm/vlmr1/crds")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "crds",
        help="generate the CustomResourceDefinitions from the API models",
        description="Write crds/*.yaml (and helm/vlmr1/crds/ when the chart exists) from the models in "
        "vlmr1_core.api. With --check, write nothing and exit 1 if a committed file is stale.",
    )
    parser.add_argument("--output-dir", type=Path, default=Path("crds"), help="where to write (default: crds)")
    parser.add_argument("--check", action="store_true", help="only report files that differ from the models")
    parser.add_argument("--stdout", action="store_true", help="print all CRDs as one YAML stream instead")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vlmr1_core.crdgen import render_all, stale_files

    rendered = render_all()
    if args.stdout:
        sys.stdout.write("---\n".join(rendered.values()))
        return 0
    directories = [args.output_dir]
    if CHART_CRDS.parent.is_dir():
        directories.append(CHART_CRDS)
    stale = [path for directory in directories for path in stale_files(directory, rendered)]
    if args.check:
        for path in stale:
            print(f"{path} is out of date with the API models; run `vlmr1 crds` and commit it", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered[path.name], encoding="utf-8")
        print(f"wrote {path}")
    return 0
