#!/usr/bin/env bash
# Install (once) a full MLflow tracking server into its own virtual environment, for the
# experiment-tracking tests, and print the path of its `mlflow` command. The project venv keeps
# only the client (mlflow-skinny); the server's dependencies (flask, sqlalchemy, alembic, ...)
# stay out of it.
# Cache: ${VLMR1_CACHE_DIR:-$HOME/.cache/vlmr1}/tools/mlflow/<version>/bin/mlflow
# The version is the client's pin in constraints.txt (MLFLOW_VERSION overrides it).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version="${MLFLOW_VERSION:-$(sed -n 's/^mlflow-skinny==//p' "$here/../../constraints.txt")}"
if [[ -z "$version" ]]; then
  echo "install-mlflow.sh: no mlflow-skinny pin in constraints.txt; set MLFLOW_VERSION" >&2
  exit 2
fi
venv="${VLMR1_CACHE_DIR:-$HOME/.cache/vlmr1}/tools/mlflow/$version"
# The marker is written last: a half-built venv (an interrupted install) is rebuilt.
if [[ -f "$venv/.complete" ]]; then
  echo "$venv/bin/mlflow"
  exit 0
fi
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "mlflow==$version" >&2
"$venv/bin/mlflow" --version >&2
touch "$venv/.complete"
echo "$venv/bin/mlflow"
