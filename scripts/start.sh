#!/usr/bin/env bash
# Starts Slipway on this machine: `slipway up` (the API on embedded SQLite, a
# runner and the hook provider in one process), after setting up what it
# needs to do its job when that is missing: the Docker engine in swarm mode,
# git, and the local image the example deploys (`scripts/test-env.sh
# --for-up`, which needs root once). Arguments go to `slipway up`.
#
# A second run finds everything set up (and the release build done) and
# starts at once.
set -euo pipefail
cd "$(dirname "$0")/.."

ready() {
  command -v git >/dev/null \
    && docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}' 2>/dev/null \
      | grep -qx 'active true' \
    && docker image inspect slipway-test/busybox:latest >/dev/null 2>&1
}

if ! ready; then
  if [ "$(id -u)" = 0 ]; then
    scripts/test-env.sh --for-up
  else
    echo "start: Slipway needs a Docker engine in swarm mode, git and the example's image;" >&2
    echo "start: set them up once as root:  sudo scripts/test-env.sh --for-up" >&2
    exit 1
  fi
fi

command -v cargo >/dev/null || {
  echo "start: cargo is needed to build Slipway (https://rustup.rs)" >&2
  exit 1
}
exec cargo run --release --locked -p slipway-cli -- up "$@"
