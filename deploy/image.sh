#!/usr/bin/env bash
# Builds Slipway's image from deploy/Dockerfile, on this machine alone: the
# base comes from deploy/base.sh, the binaries from `cargo build --release`
# (or from --bin-dir), and the build context holds nothing but them.
#
#   deploy/image.sh [--bin-dir DIR] [--version V] TAG
#
#   --bin-dir DIR   take slipway-api, slipway-runner and slipway-provider
#                   from DIR instead of building them (e.g. target/debug)
#   --version V     the image's org.opencontainers.image.version label
#                   (default: the commit, `git rev-parse HEAD`)
#
# Then push it where the swarm's nodes pull from: `docker push TAG`.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: deploy/image.sh [--bin-dir DIR] [--version V] TAG" >&2; exit 2; }
die() { echo "image: error: $*" >&2; exit 1; }

bin_dir= version= tag=
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) [ $# -ge 2 ] || usage; bin_dir=$2; shift 2 ;;
    --version) [ $# -ge 2 ] || usage; version=$2; shift 2 ;;
    -*) usage ;;
    *) [ -z "$tag" ] || usage; tag=$1; shift ;;
  esac
done
[ -n "$tag" ] || usage
[ -n "$version" ] || version=$(git rev-parse HEAD 2>/dev/null || echo unknown)

BINARIES=(slipway-api slipway-runner slipway-provider)
if [ -z "$bin_dir" ]; then
  cargo build --release --locked -p slipway-api -p slipway-runner -p slipway-provider --bins
  bin_dir=${CARGO_TARGET_DIR:-target}/release
fi
for bin in "${BINARIES[@]}"; do
  [ -x "$bin_dir/$bin" ] || die "$bin_dir/$bin is missing: build it, or give --bin-dir"
done

base=$(deploy/base.sh)
context=$(mktemp -d /tmp/slipway-image.XXXXXX)
trap 'rm -rf "$context"' EXIT
mkdir "$context/bin"
for bin in "${BINARIES[@]}"; do
  # Debug information stays with the build, not in the image.
  objcopy --strip-debug "$bin_dir/$bin" "$context/bin/$bin" 2>/dev/null \
    || cp "$bin_dir/$bin" "$context/bin/$bin"
done
cp deploy/Dockerfile "$context/Dockerfile"
docker build -q --build-arg "BASE=$base" --build-arg "VERSION=$version" -t "$tag" "$context" >/dev/null \
  || die "docker build of $tag failed"
echo "$tag"
