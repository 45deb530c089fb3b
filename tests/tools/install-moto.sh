#!/usr/bin/env bash
# Install (once) moto's S3 server in its own virtual environment, for the object-storage tests.
# Prints the path of its moto_server command. A separate environment: moto needs botocore, which
# holds python-dateutil below 3, and the project's environment must not be held to that.
# Cache: ${VLMR1_CACHE_DIR:-$HOME/.cache/vlmr1}/tools/moto-<version>/ (complete when .installed is there)
set -euo pipefail
version=5.2.6
dest="${VLMR1_CACHE_DIR:-$HOME/.cache/vlmr1}/tools/moto-$version"
python="${PYTHON:-python3}"
if [[ -f "$dest/.installed" && -x "$dest/bin/moto_server" ]]; then
  echo "$dest/bin/moto_server"
  exit 0
fi
rm -rf "$dest"
"$python" -m venv "$dest"
# The S3 backend and the HTTP server only (moto[server] would add every AWS service's dependencies).
"$dest/bin/pip" install -q --disable-pip-version-check "moto[s3]==$version" "flask==3.1.3" "flask-cors==6.0.5" >&2
"$dest/bin/python" -c 'import moto.server, flask_cors'
touch "$dest/.installed"
echo "$dest/bin/moto_server"
