#!/usr/bin/env bash
# Kept for .ci/run and habit: the script lives in the package (shipped as package data, so
# `vlmr1 dev cluster up` can build the API server from an installed package too).
exec bash "$(dirname "$0")/../../operator/src/vlmr1_operator/devcluster/build-apiserver.sh" "$@"
