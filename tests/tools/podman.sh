#!/usr/bin/env bash
# podman with the storage and settings of tests/tools/build-images.sh (its images, its runc
# and ulimit settings):  tests/tools/podman.sh images;  tests/tools/podman.sh run --rm IMAGE ...
set -euo pipefail
CONF="${VLMR1_CACHE_DIR:-$HOME/.cache/vlmr1}/images/conf"
[[ -f "$CONF/storage.conf" ]] || { echo "no $CONF/storage.conf: run tests/tools/build-images.sh first" >&2; exit 1; }
export CONTAINERS_CONF="$CONF/containers.conf" CONTAINERS_STORAGE_CONF="$CONF/storage.conf"
exec podman "$@"
