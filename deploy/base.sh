#!/usr/bin/env bash
# Makes the base image of deploy/Dockerfile, `slipway/debian:12`, on this
# machine, when the engine does not have it yet: a minimal Debian 12 root
# file system made with debootstrap (from the machine's Debian mirror), with
# ca-certificates and libssl3, imported into the engine. No container
# registry is needed, and the base has the same C library as the Debian 12
# machine the binaries are built on.
#
#   deploy/base.sh            # prints the image's name
#   SLIPWAY_BASE_IMAGE=...    # another name for it
#   DEBIAN_MIRROR=...         # another mirror (default: the one apt uses)
set -euo pipefail

IMAGE=${SLIPWAY_BASE_IMAGE:-slipway/debian:12}

die() { echo "base: error: $*" >&2; exit 1; }

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "$IMAGE"
  exit 0
fi
[ "$(id -u)" = 0 ] || die "debootstrap needs root to make $IMAGE"

if ! command -v debootstrap >/dev/null 2>&1; then
  echo "base: installing debootstrap" >&2
  DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 install -y \
    --no-install-recommends debootstrap </dev/null >/dev/null \
    || die "apt-get install debootstrap failed"
fi

mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  # The mirror apt is configured with (deb822 or one-line sources).
  mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n1 || true)
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
fi

root=$(mktemp -d /tmp/slipway-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "base: debootstrap of Debian 12 from $mirror (about a minute)" >&2
debootstrap --variant=minbase --include=ca-certificates,libssl3 bookworm "$root" "$mirror" \
  >"$root.log" 2>&1 || { tail -n 20 "$root.log" >&2; die "debootstrap failed (log above)"; }
rm -f "$root.log"
# What a container does not need: package caches and lists, logs.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*
tar -C "$root" --numeric-owner -cf - . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'CMD ["/bin/bash"]' \
  -m "Debian 12 (bookworm) minbase with ca-certificates and libssl3, from deploy/base.sh" \
  - "$IMAGE" >/dev/null
echo "base: $IMAGE made" >&2
echo "$IMAGE"
