#!/usr/bin/env bash
# Install (once) Debian's Prometheus server binary for the autoscaling integration test.
# Prints the binary's path. The .deb is unpacked into the cache, not installed, so no
# service is started and nothing on the machine changes.
# Cache: ${VLMR1_CACHE_DIR:-$HOME/.cache/vlmr1}/tools/prometheus/prometheus
set -euo pipefail
dest="${VLMR1_CACHE_DIR:-$HOME/.cache/vlmr1}/tools/prometheus"
if [[ -x "$dest/prometheus" ]] && "$dest/prometheus" --version >/dev/null 2>&1; then
  echo "$dest/prometheus"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download prometheus >/dev/null 2>&1; then
  apt-get update >/dev/null
  apt-get download prometheus >/dev/null
fi
dpkg -x prometheus_*.deb unpacked
mkdir -p "$dest"
cp unpacked/usr/bin/prometheus "$dest/prometheus.tmp"
mv "$dest/prometheus.tmp" "$dest/prometheus"
"$dest/prometheus" --version >&2
echo "$dest/prometheus"
