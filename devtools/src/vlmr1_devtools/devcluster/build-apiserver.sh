#!/usr/bin/env bash
# Build (once) and cache a real Kubernetes API server for CRD tests.
#
# Output: prints ONE line on stdout, the directory holding
#   bin/apiextensions-apiserver  built here from Debian's Go source packages
#   bin/etcd                     from Debian's etcd-server package (unstable, 3.5)
#   bin/kubectl                  from Debian's kubectl package (unstable, 1.36)
#   versions.env                 VAR=value lines describing what was built
# Everything else (progress, timings) goes to stderr.
#
# Cache: ${VLMR1_CACHE_DIR:-$HOME/.cache/vlmr1}/apiserver (outside the repo, so
# CI can keep it between runs). When the cached binaries exist and run, the
# script exits in well under 2 s without touching apt.
#
# Cold path (root needed, or sudo): Debian's *unstable* suite is added as an
# extra apt source whose URI is derived at run time from the machine's
# existing apt configuration (no host name is written in this repository).
# Pinning (written to /etc/apt/preferences.d for the duration of the run):
#   - everything from unstable: priority 1 (never chosen unless asked for);
#   - golang-* plus tzdata/tzdata-legacy from unstable: priority 990.
#     The Go source packages have unversioned dependencies on each other, so
#     they must all come from the same suite; a plain "-t unstable" would also
#     upgrade libc6, libstdc++6, systemd ... from unstable, which we refuse.
#     tzdata-legacy (needed by golang-github-spf13-cast-dev) conflicts with
#     bookworm's tzdata, so tzdata (pure data) comes along.
# Only golang-* (Go toolchain + Go source trees, arch:all, ~2.7 GB unpacked)
# and tzdata are installed from unstable; apt may also pull bookworm point
# updates (e.g. the systemd libraries libsystemd-dev wants in lockstep). etcd and kubectl are NOT installed with dpkg: their
# .debs are downloaded and unpacked into the cache, because some images ship an
# unrelated "kubectl" package (Google's, epoch 1:) that would make Debian's
# version look like a downgrade, and etcd-server's maintainer scripts would
# try to start a system service.
# The temporary source and pin files are REMOVED on exit (trap), so the
# machine's apt configuration is left as it was; the unstable package lists
# stay in /var/lib/apt/lists until the next "apt-get update" prunes them.
#
# The server is built in GOPATH mode with no network (GO111MODULE=off,
# GOPROXY=off, GOPATH=/usr/share/gocode where the -dev packages put their
# source), statically (CGO_ENABLED=0), with the version stamped through
# -ldflags because recent kubectl rejects a server reporting v0.0.0.
#
# Unstable moves: a rebuild months later may give a newer Kubernetes; the
# versions actually built are recorded in versions.env.
#
# Env: VLMR1_CACHE_DIR (cache root), VLMR1_REBUILD=1 (ignore the cache).
set -euo pipefail

CACHE_ROOT="${VLMR1_CACHE_DIR:-$HOME/.cache/vlmr1}"
OUT="$CACHE_ROOT/apiserver"
BIN="$OUT/bin"
STAMP="$OUT/versions.env"
# Bump when the recipe changes so stale caches get rebuilt.
RECIPE=1

log() { printf '[build-apiserver] %s\n' "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

cache_ok() {
  [[ -f "$STAMP" ]] && grep -qx "RECIPE=$RECIPE" "$STAMP" || return 1
  local b
  for b in apiextensions-apiserver etcd kubectl; do
    [[ -x "$BIN/$b" ]] || return 1
  done
  # Cheap "does it run" checks (each a few tens of ms).
  "$BIN/etcd" --version >/dev/null 2>&1 || return 1
  "$BIN/kubectl" version --client >/dev/null 2>&1 || return 1
  "$BIN/apiextensions-apiserver" --help >/dev/null 2>&1 || return 1
}

if [[ "${VLMR1_REBUILD:-0}" != 1 ]] && cache_ok; then
  echo "$OUT"
  exit 0
fi

# One builder at a time (parallel test runs on a cold cache); the others wait,
# then find the cache filled.
mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.build-apiserver.lock"
flock 9
if [[ "${VLMR1_REBUILD:-0}" != 1 ]] && cache_ok; then
  echo "$OUT"
  exit 0
fi

T0=$(now)
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { log "need root (or sudo) to install packages"; exit 1; }
  SUDO=(sudo DEBIAN_FRONTEND=noninteractive)
fi
export DEBIAN_FRONTEND=noninteractive

# --- apt: temporary unstable source + pins --------------------------------
SOURCES=/etc/apt/sources.list.d/debian.sources
SRC_FILE=/etc/apt/sources.list.d/vlmr1-unstable.sources
PIN_FILE=/etc/apt/preferences.d/vlmr1-unstable
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vlmr1-apiserver.XXXXXX")
chmod 755 "$WORK"  # apt's _apt sandbox user downloads into $WORK/debs
cleanup() {
  "${SUDO[@]}" rm -f "$SRC_FILE" "$PIN_FILE"
  rm -rf "$WORK"
}
trap cleanup EXIT

# The Debian archive URI: the "URIs:" of the stanza whose Suites carry the
# release codename (not the -security one). Falls back to a one-line
# sources.list entry.
mirror_uri() {
  local uri=""
  if [[ -f "$SOURCES" ]]; then
    uri=$(awk '
      /^[[:space:]]*$/ { u = ""; next }
      /^URIs:/ { u = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i !~ /-security$/ && u != "") { print u; exit } }
    ' "$SOURCES")
  fi
  if [[ -z "$uri" && -f /etc/apt/sources.list ]]; then
    uri=$(awk '$1 == "deb" && $3 !~ /-security$/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
  fi
  [[ -n "$uri" ]] || { log "cannot find the Debian mirror in the apt configuration"; return 1; }
  echo "$uri"
}
URI=$(mirror_uri)
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

"${SUDO[@]}" tee "$SRC_FILE" >/dev/null <<EOF
Types: deb
URIs: $URI
Suites: unstable
Components: main
Signed-By: $KEYRING
EOF
"${SUDO[@]}" tee "$PIN_FILE" >/dev/null <<EOF
Package: *
Pin: release n=sid
Pin-Priority: 1

Package: golang-* tzdata tzdata-legacy
Pin: release n=sid
Pin-Priority: 990
EOF

# apt's chatter goes to a log that is shown only when apt fails.
apt_quiet() {
  if ! "${SUDO[@]}" "$@" >"$WORK/apt.log" 2>&1; then
    cat "$WORK/apt.log" >&2
    log "failed: $*"
    return 1
  fi
}

T=$(now)
apt_quiet apt-get update
log "apt-get update: $(elapsed "$T")"

T=$(now)
apt_quiet apt-get install -y --no-install-recommends \
  golang-go golang-k8s-apiextensions-apiserver-dev
log "apt-get install (Go toolchain + k8s source packages): $(elapsed "$T")"

# etcd and kubectl: download the .debs and unpack the binaries only.
T=$(now)
mkdir -p "$WORK/debs" "$WORK/root"
chmod 777 "$WORK/debs"
(cd "$WORK/debs" && apt-get download -qq etcd-server/unstable kubectl/unstable >&2)
for deb in "$WORK"/debs/*.deb; do dpkg-deb -x "$deb" "$WORK/root"; done
log "download + unpack etcd-server, kubectl: $(elapsed "$T")"

deb_version() { dpkg-deb -f "$1" Version; }
ETCD_DEB_VERSION=$(deb_version "$WORK"/debs/etcd-server_*.deb)
KUBECTL_DEB_VERSION=$(deb_version "$WORK"/debs/kubectl_*.deb)
AX_DEB_VERSION=$(dpkg-query -W -f='${Version}' golang-k8s-apiextensions-apiserver-dev)
# 0.36.4-1 (staging repo version) -> v1.36.4 (Kubernetes version)
AX_UPSTREAM=${AX_DEB_VERSION#*:}
AX_UPSTREAM=${AX_UPSTREAM%%-*}
AX_UPSTREAM=${AX_UPSTREAM%%[+~]*}
IFS=. read -r _ AX_MINOR AX_PATCH <<<"$AX_UPSTREAM"
K8S_VERSION="v1.${AX_MINOR}.${AX_PATCH}"

# --- build ------------------------------------------------------------------
T=$(now)
# Debian's toolchain (golang-go), not whatever "go" comes first on PATH.
GO=/usr/lib/go/bin/go
PKG=k8s.io/apiextensions-apiserver
V=k8s.io/component-base/version
BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS="-s -w -X $V.gitVersion=$K8S_VERSION -X $V.gitMajor=1 -X $V.gitMinor=$AX_MINOR"
LDFLAGS+=" -X $V.gitTreeState=clean -X $V.buildDate=$BUILD_DATE"
mkdir -p "$WORK/gocache" "$BIN"
env GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off GOFLAGS= GOTOOLCHAIN=local \
  GOCACHE="$WORK/gocache" CGO_ENABLED=0 \
  "$GO" build -trimpath -ldflags "$LDFLAGS" -o "$WORK/apiextensions-apiserver" "$PKG" >&2
log "go build $PKG ($("$GO" version | awk '{print $3}')): $(elapsed "$T")"

# --- install into the cache ---------------------------------------------------
install -m 0755 "$WORK/apiextensions-apiserver" "$BIN/apiextensions-apiserver"
install -m 0755 "$WORK/root/usr/bin/etcd" "$BIN/etcd"
install -m 0755 "$WORK/root/usr/bin/kubectl" "$BIN/kubectl"
cat >"$STAMP" <<EOF
RECIPE=$RECIPE
K8S_VERSION=$K8S_VERSION
APIEXTENSIONS_DEB_VERSION=$AX_DEB_VERSION
ETCD_DEB_VERSION=$ETCD_DEB_VERSION
KUBECTL_DEB_VERSION=$KUBECTL_DEB_VERSION
APISERVER=$BIN/apiextensions-apiserver
ETCD=$BIN/etcd
KUBECTL=$BIN/kubectl
EOF
cache_ok || { log "built binaries do not run"; exit 1; }
log "done in $(elapsed "$T0"): $K8S_VERSION, etcd $ETCD_DEB_VERSION, kubectl $KUBECTL_DEB_VERSION"
echo "$OUT"
