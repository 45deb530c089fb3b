#!/usr/bin/env bash
# Kept for .ci/run and habit: the script lives in the package (shipped as package data, so
# `vlmr1 dev cluster up` can build the API server from an installed package too).
exec bash "$(dirname "$0")/../../devtools/src/vlmr1_devtools/devcluster/build-apiserver.sh" "$@"
