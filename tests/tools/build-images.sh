#!/usr/bin/env bash
# Build vlmr1's images with podman, without a Docker engine or a registry (tests/images/).
#
#   bash tests/tools/build-images.sh            # base (once) + operator, trainer cpu, serving transformers
#   bash tests/tools/build-images.sh operator   # only some: operator, trainer-cpu, serving-transformers
#   tests/tools/podman.sh images                # podman with the same storage and settings
#
# Output: ONE line on stdout, the folder holding containers.conf and storage.conf; point
# CONTAINERS_CONF and CONTAINERS_STORAGE_CONF at them to reach the images (tests/images/podman.py
# and tests/tools/podman.sh do). Progress and podman's build log go to stderr. Exit non-zero
# with a reason when podman or an image cannot be had.
#
# The machine: podman with runc (`crun` refuses this machine's cgroup layout), cgroupfs (no
# systemd), no default ulimits (setrlimit is not permitted in this sandbox), the overlay
# storage driver (native overlay works here; vfs copies every layer whole), host networking
# (no bridge or slirp needed; pip in a build reaches the package index the host reaches).
#
# The base: no registry serves images here, so the Dockerfiles' PYTHON_IMAGE build argument
# (default: the upstream python:3.11-slim-bookworm) is given a base made from Debian's own
# packages: debootstrap --variant=minbase of Debian 12 with python3 (3.11), python3-venv,
# python-is-python3 and ca-certificates, apt lists and docs removed, then `podman import`.
# The mirror is the machine's own Debian source (its apt configuration), never written here.
#
# torch: the CPU images take torch from a local wheel folder when one is given, mounted into
# the build (`podman build -v DIR:/mnt`, build argument WHEELS=/mnt): $VLMR1_WHEELHOUSE,
# else /opt/wheels if it holds a torch wheel. Without one pip downloads torch from the index.
#
# Cache: ${VLMR1_CACHE_DIR:-$HOME/.cache/vlmr1}/images/ (storage/ is podman's graph root: the
# base and every layer; conf/ the two files). A warm rebuild after a code change rebuilds only
# the layers holding the vlmr1 wheel (the dependencies are installed from pyproject.toml and
# constraints.txt alone). Root is needed (apt-get once, and podman as root).
#
# Env: VLMR1_CACHE_DIR; VLMR1_WHEELHOUSE; VLMR1_IMAGE_BASE=<image> builds on that image instead
# of the Debian-made one (e.g. python:3.11-slim-bookworm where a registry is reachable).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
CACHE_ROOT="${VLMR1_CACHE_DIR:-$HOME/.cache/vlmr1}"
DIR="$CACHE_ROOT/images"
CONF="$DIR/conf"
# Bump when the base recipe changes: a new base tag, so every image is rebuilt on it.
BASE_RECIPE=2
BASE_TAG="localhost/vlmr1-base/python:3.11-bookworm-r$BASE_RECIPE"
SUITE=bookworm

log() { printf '[build-images] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

[[ $(id -u) -eq 0 ]] || die "run as root: podman builds here as root (and apt-get installs it once)"

# --- podman, runc, debootstrap ------------------------------------------------------------
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  T=$(now)
  log "installing podman, runc and debootstrap (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || die "apt-get update failed"
  # The Debian release's own podman: its containers-common matches it.
  release="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
  apt-get install -y -qq --no-install-recommends ${release:+-t "$release"} \
      podman runc debootstrap golang-github-containers-common conmon >&2 \
    || die "apt-get install podman runc debootstrap failed"
  log "installed: $(podman --version) ($(elapsed "$T"))"
fi

# --- settings -------------------------------------------------------------------------------
mkdir -p "$CONF" "$DIR/storage"
RUNROOT="${XDG_RUNTIME_DIR:-/run}/vlmr1-podman"
cat >"$CONF/containers.conf.$$" <<EOF
# Written by tests/tools/build-images.sh.
[containers]
# setrlimit is not permitted in this sandbox: podman's default nofile/nproc limits fail runc.
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
cat >"$CONF/storage.conf.$$" <<EOF
# Written by tests/tools/build-images.sh.
[storage]
driver = "overlay"
graphroot = "$DIR/storage"
runroot = "$RUNROOT"
EOF
mv -f "$CONF/containers.conf.$$" "$CONF/containers.conf"
mv -f "$CONF/storage.conf.$$" "$CONF/storage.conf"
export CONTAINERS_CONF="$CONF/containers.conf" CONTAINERS_STORAGE_CONF="$CONF/storage.conf"

# One builder at a time; a second waits, then finds the layers cached.
exec 9>"$DIR/.build.lock"
flock 9

# The layer cache grows with every dependency change (about 2 GB per trainer rebuild); past a
# cap (MB, VLMR1_IMAGE_CACHE_MB) unused layers are dropped first, and that build is a cold one
# (about 4 minutes). `podman image prune` drops the cached intermediate layers too.
cache_mb="$(du -sm "$DIR/storage" 2>/dev/null | cut -f1 || echo 0)"
if (( ${cache_mb:-0} > ${VLMR1_IMAGE_CACHE_MB:-20000} )); then
  log "layer cache at ${cache_mb} MB: pruning unused images"
  podman image prune -f >/dev/null || true
fi

# --- the base ---------------------------------------------------------------------------------
debian_mirror() {
  # The first http(s) URI of the machine's Debian source for the main archive.
  local uri
  uri="$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | grep -v -- '-security' | grep -oE 'https?://[^ ]+' | head -n 1 || true)"
  [[ -n "$uri" ]] || die "no Debian mirror in the apt configuration for debootstrap"
  echo "$uri"
}

BASE="${VLMR1_IMAGE_BASE:-}"
if [[ -z "$BASE" ]]; then
  BASE="$BASE_TAG"
  if ! podman image exists "$BASE"; then
    T=$(now)
    root="$(mktemp -d "$DIR/rootfs.XXXXXX")"
    trap 'rm -rf "$root"' EXIT
    mirror="$(debian_mirror)"
    log "debootstrap $SUITE (minbase + python3) from the machine's Debian mirror"
    debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
        "$SUITE" "$root" "$mirror" >"$DIR/debootstrap.log" 2>&1 \
      || die "debootstrap failed; see $DIR/debootstrap.log"
    # What a slim image leaves out: package archives and lists, documentation.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
           "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
           "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
    tar -C "$root" --numeric-owner -cf - . | podman import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        --message "Debian $SUITE minbase + python3 (debootstrap), vlmr1 test base r$BASE_RECIPE" \
        - "$BASE" >/dev/null || die "podman import of the base failed"
    rm -rf "$root"
    trap - EXIT
    log "base $BASE imported ($(elapsed "$T"))"
  fi
fi

# --- the images ------------------------------------------------------------------------------
VERSION="$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
  "$REPO/pyproject.toml")"
REVISION="$(git -C "$REPO" rev-parse HEAD 2>/dev/null || true)"
SOURCE_URL="$(git -C "$REPO" config --get remote.origin.url 2>/dev/null || true)"

WHEELS="${VLMR1_WHEELHOUSE:-}"
if [[ -z "$WHEELS" ]] && compgen -G "/opt/wheels/torch-*.whl" >/dev/null; then
  WHEELS=/opt/wheels
fi

# pip's CA bundle where the machine sets one (a TLS-intercepting proxy): the same file is
# mounted into the builds and named by the PIP_CERT build argument (build-time only).
CERT="${PIP_CERT:-}"
if [[ -z "$CERT" ]]; then
  CERT="$(python3 -m pip config get global.cert 2>/dev/null || true)"
fi
[[ -z "$CERT" || -f "$CERT" ]] || die "pip's CA bundle $CERT does not exist"

# Podman 4.3's layer cache keys a LABEL step on its text, not on the build arguments it
# expands, so after a commit that changes nothing else the cached label layer would keep the
# previous revision (and `--label` is appended to the Dockerfile's last stage, not to the
# --target one). A config-only build on top writes the values into the step's text instead.
relabel() {  # relabel TAG LOG
  local file="$DIR/relabel.Containerfile"
  mkdir -p "$DIR/empty-context"
  printf 'FROM %s\nLABEL "org.opencontainers.image.version"="%s" "org.opencontainers.image.revision"="%s" "org.opencontainers.image.source"="%s"\n' \
    "$1" "$VERSION" "$REVISION" "$SOURCE_URL" >"$file"
  podman build --layers -f "$file" -t "$1" "$DIR/empty-context" >>"$2" 2>&1
}

# name dockerfile target tag (the tags are the operator's and the chart's defaults)
IMAGES=(
  "operator operator/Dockerfile operator vlmr1/operator:$VERSION"
  "trainer-cpu trainer_image/Dockerfile cpu vlmr1/trainer:$VERSION-cpu"
  "serving-transformers serving_image/Dockerfile transformers vlmr1/serving:$VERSION-transformers"
)
wanted=("$@")

for entry in "${IMAGES[@]}"; do
  read -r name dockerfile target tag <<<"$entry"
  if [[ ${#wanted[@]} -gt 0 && ! " ${wanted[*]} " =~ " $name " ]]; then
    continue
  fi
  args=(--layers --network host --target "$target" -f "$REPO/$dockerfile" -t "$tag"
        --build-arg "PYTHON_IMAGE=$BASE" --build-arg "VLMR1_VERSION=$VERSION"
        --build-arg "REVISION=$REVISION" --build-arg "SOURCE_URL=$SOURCE_URL")
  if [[ -n "$CERT" ]]; then
    # Over the base's own bundle (ca-certificates): a mount point that exists already leaves
    # nothing behind in the image, where a new one would leave an empty file.
    args+=(-v "$CERT:/etc/ssl/certs/ca-certificates.crt:ro" --build-arg "PIP_CERT=/etc/ssl/certs/ca-certificates.crt")
  fi
  if [[ -n "$WHEELS" && "$name" != operator ]]; then
    # /mnt: an empty folder every Debian base has (a new mount point would stay in the image).
    args+=(-v "$WHEELS:/mnt:ro" --build-arg "WHEELS=/mnt")
  fi
  T=$(now)
  log "building $tag ($dockerfile --target $target)"
  if ! podman build "${args[@]}" "$REPO" >"$DIR/build-$name.log" 2>&1; then
    tail -n 40 "$DIR/build-$name.log" >&2
    die "building $tag failed; full log: $DIR/build-$name.log"
  fi
  relabel "$tag" "$DIR/build-$name.log" || die "labelling $tag failed; full log: $DIR/build-$name.log"
  log "built $tag ($(elapsed "$T"))"
done

echo "$CONF"
