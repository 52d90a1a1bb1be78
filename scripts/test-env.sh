#!/usr/bin/env bash
# Install and start everything the Slipway test suite needs on a Debian 12
# machine, as root: Docker engine in swarm mode, local busybox test images,
# PostgreSQL with a superuser role `root`, mold, git, Node with npm (the API's
# tests run the GraphQL-over-HTTP audit suite, graphql-http, with them),
# Chromium (the web UI's tests drive it with Playwright) and Python's
# prometheus_client (the metrics tests parse scrapes with it).
#
# Idempotent: every step checks first and does nothing when already done.
# Prints the PostgreSQL URL the tests should use at the end.
#
# `scripts/test-env.sh --for-up` sets up only what `slipway up` needs to do its
# job (the Docker engine in swarm mode, git, and the example's local image):
# scripts/start.sh runs it.
set -euo pipefail

FOR_UP=false
case "${1:-}" in
  --for-up) FOR_UP=true ;;
  "") ;;
  *) echo "usage: scripts/test-env.sh [--for-up]" >&2; exit 2 ;;
esac

export DEBIAN_FRONTEND=noninteractive
# The Docker CLI (28.x) is newer than Debian's engine (20.10, API 1.41); the
# CLI negotiates the API version by itself, so DOCKER_API_VERSION is not set.

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PG_VERSION=15
PG_CLUSTER=main
PG_URL='postgres://root@%2Fvar%2Frun%2Fpostgresql/postgres'
DOCKERD_LOG=/var/log/dockerd.log
IMAGE_REPO=slipway-test/busybox

log() { echo "$*"; }
die() { echo "test-env: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"

# wait_for TIMEOUT_SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.5 s.
wait_for() {
  local timeout=$1 what=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "test-env: timed out after ${timeout}s waiting for ${what}" >&2
      return 1
    fi
    sleep 0.5
  done
}

# --- 1. apt packages --------------------------------------------------------

pkg_missing() {
  # $1: package name, $2: optional command that also counts as present.
  if [ -n "${2:-}" ] && command -v "$2" >/dev/null 2>&1; then return 1; fi
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" != "install ok installed" ]
}

no_apt_running() {
  local name
  for name in apt apt-get dpkg unattended-upgr; do
    if pgrep -x "$name" >/dev/null; then return 1; fi
  done
}

missing_pkgs() {
  local out=()
  pkg_missing docker.io dockerd && out+=(docker.io)
  pkg_missing busybox-static && out+=(busybox-static)
  pkg_missing git git && out+=(git)
  # git2 builds libgit2 with HTTPS (OpenSSL) and SSH support.
  pkg_missing libssl-dev && out+=(libssl-dev)
  pkg_missing pkg-config pkg-config && out+=(pkg-config)
  if $FOR_UP; then
    echo "${out[@]}"
    return
  fi
  pkg_missing postgresql && out+=(postgresql)
  pkg_missing mold mold && out+=(mold)
  pkg_missing nodejs node && out+=(nodejs)
  pkg_missing npm npm && out+=(npm)
  # The web UI's tests drive Debian's Chromium with Playwright.
  pkg_missing chromium chromium && out+=(chromium)
  # The metrics tests parse scrapes with Prometheus's own Python parser
  # (testkit/src/prometheus.rs runs it with /usr/bin/python3).
  pkg_missing python3-prometheus-client && out+=(python3-prometheus-client)
  echo "${out[@]}"
}

missing=$(missing_pkgs)
if [ -n "$missing" ] && ! no_apt_running; then
  # Someone else may be installing the very same packages: let them finish.
  log "apt: another apt/dpkg is running, waiting for it"
  wait_for 900 "the running apt/dpkg process to finish" no_apt_running \
    || die "apt/dpkg still busy (see: pgrep -a 'apt|dpkg')"
  missing=$(missing_pkgs)
fi
if [ -n "$missing" ]; then
  log "apt: installing $missing"
  apt_opts=(-q -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  apt-get "${apt_opts[@]}" update </dev/null >/dev/null
  # shellcheck disable=SC2086
  apt-get "${apt_opts[@]}" install -y --no-install-recommends $missing </dev/null >/dev/null
  missing=$(missing_pkgs)
  [ -z "$missing" ] || die "apt: still missing after install: $missing"
  log "apt: installed"
else
  log "apt: all packages present"
fi

# --- 2. Docker engine in swarm mode -----------------------------------------

docker_up() { docker info >/dev/null 2>&1; }

if docker_up; then
  log "docker: already running"
else
  if pgrep -x dockerd >/dev/null; then
    log "docker: dockerd process exists, waiting for it to answer"
  else
    # A pid file left by a dead dockerd makes the new one refuse to start.
    if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
      rm -f /var/run/docker.pid
    fi
    setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
    disown || true
  fi
  wait_for 60 "'docker info' to answer (dockerd log: $DOCKERD_LOG)" docker_up \
    || die "dockerd did not come up within 60s; see $DOCKERD_LOG"
  log "docker: started (log: $DOCKERD_LOG)"
fi

swarm_state() { docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null; }
swarm_active() { [ "$(swarm_state)" = active ]; }

state=$(swarm_state)
case "$state" in
  active) log "swarm: already active" ;;
  inactive)
    docker swarm init --advertise-addr 127.0.0.1 >/dev/null
    wait_for 30 "swarm to become active" swarm_active || die "swarm did not become active (state: $(swarm_state))"
    log "swarm: initialised" ;;
  *)
    # pending / locked / error: give a restarting manager a moment.
    wait_for 30 "swarm state '$state' to become active" swarm_active \
      || die "swarm is '$(swarm_state)', not active; inspect with 'docker info'"
    log "swarm: active" ;;
esac

# --- 3. local busybox test images -------------------------------------------

image_present() { docker image inspect "$1" >/dev/null 2>&1; }

BUILD_ROOT=
trap 'if [ -n "$BUILD_ROOT" ]; then rm -rf "$BUILD_ROOT"; fi' EXIT

# build_image TAG VERSION: import a rootfs holding busybox and its applet links.
build_image() {
  local tag=$1 version=$2 root
  root=$(mktemp -d /tmp/slipway-busybox.XXXXXX)
  BUILD_ROOT=$root
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,proc,sys,dev,var,run}
  chmod 1777 "$root/tmp"
  install -m 0755 "$(command -v busybox)" "$root/bin/busybox"
  local applet
  while read -r applet; do
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$root/$(dirname "$applet")"
    ln -sf /bin/busybox "$root/$applet"
  done < <(busybox --list-full)
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  echo "$version" >"$root/etc/slipway-version"
  tar -C "$root" --numeric-owner -cf - . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["/bin/sh"]' \
    -m "slipway test busybox $version" - "$tag" >/dev/null
  rm -rf "$root"
  BUILD_ROOT=
}

for version in latest v2; do
  tag="$IMAGE_REPO:$version"
  if image_present "$tag"; then
    log "image: $tag already present"
  else
    build_image "$tag" "$version"
    log "image: $tag built"
  fi
done

if $FOR_UP; then
  echo "test-env: ready for slipway up in ${SECONDS}s"
  exit 0
fi

# --- 4. PostgreSQL ----------------------------------------------------------

cluster_status() { pg_lsclusters -h 2>/dev/null | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1==v && $2==c {print $4}'; }

status=$(cluster_status)
if [ -z "$status" ]; then
  pg_createcluster "$PG_VERSION" "$PG_CLUSTER" >/dev/null
  log "postgres: cluster $PG_VERSION/$PG_CLUSTER created"
  status=$(cluster_status)
fi
case "$status" in
  online*) log "postgres: already running" ;;
  *)
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start
    log "postgres: started" ;;
esac

pg_ready() { runuser -u postgres -- psql -d postgres -Atqc 'select 1' >/dev/null 2>&1; }
wait_for 60 "PostgreSQL $PG_VERSION/$PG_CLUSTER to accept connections (log: /var/log/postgresql/postgresql-$PG_VERSION-$PG_CLUSTER.log)" pg_ready \
  || die "PostgreSQL did not come up within 60s"

if [ "$(runuser -u postgres -- psql -d postgres -Atqc "select 1 from pg_roles where rolname = 'root'")" = 1 ]; then
  log "postgres: role root already exists"
else
  runuser -u postgres -- psql -d postgres -qc 'CREATE ROLE root SUPERUSER LOGIN' >/dev/null
  log "postgres: role root created"
fi

root_ready() { psql "$PG_URL" -Atqc 'select 1' >/dev/null 2>&1; }
wait_for 30 "psql as root at $PG_URL" root_ready || die "cannot connect as root to $PG_URL"
log "postgres: ready"

# --- 5. git servers: sshd, ssh-keygen, openssl -------------------------------
# The git tests run servers of their own on 127.0.0.1: an `sshd -D -f CONFIG -p
# PORT` per test (its own host key and authorized key, made with ssh-keygen)
# and a TLS server for git's smart HTTP (its CA made with openssl). This only
# installs the programs and the directory sshd wants; it never starts the
# system's sshd.

SSHD=/usr/sbin/sshd
POLICY_RC=/usr/sbin/policy-rc.d

git_servers_missing() {
  local out=()
  if [ ! -x "$SSHD" ] || pkg_missing openssh-server; then out+=(openssh-server); fi
  pkg_missing openssh-client ssh-keygen && out+=(openssh-client)
  pkg_missing openssl openssl && out+=(openssl)
  echo "${out[@]}"
}

# Installs $@ with a policy-rc.d that refuses to start services (as Debian's
# images have), so that installing openssh-server does not start an sshd on
# port 22; an existing policy-rc.d is left as it is.
git_servers_apt_install() (
  if [ ! -e "$POLICY_RC" ]; then
    trap 'rm -f "$POLICY_RC"' EXIT
    printf '#!/bin/sh\n# Added by scripts/test-env.sh while it installs packages.\nexit 101\n' >"$POLICY_RC"
    chmod 0755 "$POLICY_RC"
  fi
  local opts=(-q -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  apt-get "${opts[@]}" update </dev/null >/dev/null
  apt-get "${opts[@]}" install -y --no-install-recommends "$@" </dev/null >/dev/null
)

git_servers_setup() {
  local missing
  missing=$(git_servers_missing)
  if [ -n "$missing" ] && ! no_apt_running; then
    log "git servers: another apt/dpkg is running, waiting for it"
    wait_for 900 "the running apt/dpkg process to finish" no_apt_running \
      || die "apt/dpkg still busy (see: pgrep -a 'apt|dpkg')"
    missing=$(git_servers_missing)
  fi
  if [ -n "$missing" ]; then
    log "git servers: installing $missing"
    # shellcheck disable=SC2086
    git_servers_apt_install $missing || die "apt: installing $missing failed"
    missing=$(git_servers_missing)
    [ -z "$missing" ] || die "apt: still missing after install: $missing"
    log "git servers: installed"
  else
    log "git servers: sshd, ssh-keygen and openssl present"
  fi
  # sshd's privilege separation directory (systemd's tmpfiles makes it at boot).
  install -d -m 0755 -o root -g root /run/sshd
}

git_servers_setup

# --- 6. container registries on 127.0.0.1 -----------------------------------
# Debian's docker-registry (distribution 2.8), run by this script without
# systemd: an open one, and a private one with htpasswd auth over TLS with a CA
# made here, which the engine trusts through /etc/docker/certs.d. The test
# images are pushed to both. Their data lives under $REGISTRY_DIR, so a second
# run finds them as they were. The testkit's `registry` module knows these
# addresses and the test user.

REGISTRY_DIR=/var/lib/slipway-registry
REGISTRY_OPEN=127.0.0.1:5000
REGISTRY_PRIVATE=127.0.0.1:5443
REGISTRY_USER=slipway
# A test password only; its characters make a standard base64 encoding of the
# credentials differ from the URL-safe one the engine reads.
REGISTRY_PASSWORD='t3st>>>pass???word'
REGISTRY_LOG=/var/log/slipway-registry.log

registry_packages() {
  local missing=()
  pkg_missing docker-registry docker-registry && missing+=(docker-registry)
  pkg_missing apache2-utils htpasswd && missing+=(apache2-utils)
  pkg_missing openssl openssl && missing+=(openssl)
  pkg_missing curl curl && missing+=(curl)
  if [ ${#missing[@]} -eq 0 ]; then
    log "registry: packages present"
    return
  fi
  wait_for 900 "the running apt/dpkg process to finish" no_apt_running \
    || die "apt/dpkg still busy (see: pgrep -a 'apt|dpkg')"
  log "registry: installing ${missing[*]}"
  local opts=(-q -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  apt-get "${opts[@]}" update </dev/null >/dev/null
  apt-get "${opts[@]}" install -y --no-install-recommends "${missing[@]}" </dev/null >/dev/null
  # The package's own service (all interfaces, port 5000) is not the one the
  # tests use: stop it if its init script started it.
  if [ -f /var/run/docker-registry.pid ] && kill -0 "$(cat /var/run/docker-registry.pid)" 2>/dev/null; then
    /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
  fi
}

# The CA, and the private registry's certificate for 127.0.0.1 signed by it.
registry_certificates() {
  local tls=$REGISTRY_DIR/tls
  mkdir -p "$tls"
  if [ ! -s "$tls/ca.crt" ] || [ ! -s "$tls/server.crt" ] \
    || ! openssl verify -CAfile "$tls/ca.crt" "$tls/server.crt" >/dev/null 2>&1; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj '/CN=Slipway test registry CA' \
      -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj '/CN=127.0.0.1' \
      -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$tls/server.ext"
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
      -CAcreateserial -days 3650 -extfile "$tls/server.ext" -out "$tls/server.crt" 2>/dev/null
    log "registry: CA and certificate for $REGISTRY_PRIVATE made"
  fi
  # The engine reads certs.d at every connection: no restart needed.
  local certs_d=/etc/docker/certs.d/$REGISTRY_PRIVATE
  if ! cmp -s "$tls/ca.crt" "$certs_d/ca.crt"; then
    mkdir -p "$certs_d"
    cp "$tls/ca.crt" "$certs_d/ca.crt"
    log "registry: the engine trusts the CA ($certs_d/ca.crt)"
  fi
}

registry_config() {
  local name=$1 addr=$2 extra=$3
  mkdir -p "$REGISTRY_DIR/$name"
  cat >"$REGISTRY_DIR/$name.yml" <<CONFIG
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $REGISTRY_DIR/$name}
  delete: {enabled: true}
http:
  addr: $addr
  secret: slipway-test-registry
$extra
CONFIG
}

registry_open_up() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$REGISTRY_OPEN/v2/")" = 200 ]; }
registry_private_up() {
  local ca=$REGISTRY_DIR/tls/ca.crt
  [ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" "https://$REGISTRY_PRIVATE/v2/")" = 401 ] \
    && [ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" -u "$REGISTRY_USER:$REGISTRY_PASSWORD" "https://$REGISTRY_PRIVATE/v2/")" = 200 ]
}

# registry_start NAME ADDR CHECK: starts the registry NAME unless CHECK passes.
registry_start() {
  local name=$1 addr=$2 check=$3
  if "$check"; then
    log "registry: $name already serving on $addr"
    return
  fi
  # Something else listening there would make the registry fail to start.
  if (exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}") 2>/dev/null; then
    die "registry: $addr is taken by something that is not the $name registry"
  fi
  setsid nohup docker-registry serve "$REGISTRY_DIR/$name.yml" >>"$REGISTRY_LOG" 2>&1 </dev/null &
  disown || true
  wait_for 30 "the $name registry on $addr (log: $REGISTRY_LOG)" "$check" \
    || die "the $name registry did not come up within 30s; see $REGISTRY_LOG"
  log "registry: $name started on $addr"
}

# Pushes the test images with a Docker config of the script's own, so that
# root's ~/.docker/config.json is left alone.
registry_push_images() {
  local config=$REGISTRY_DIR/docker-config
  mkdir -p "$config"
  printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$REGISTRY_PRIVATE" \
    "$(printf '%s:%s' "$REGISTRY_USER" "$REGISTRY_PASSWORD" | base64 -w0)" >"$config/config.json"
  local version registry target
  for version in latest v2; do
    for registry in "$REGISTRY_OPEN" "$REGISTRY_PRIVATE"; do
      target=$registry/$IMAGE_REPO:$version
      docker tag "$IMAGE_REPO:$version" "$target"
      DOCKER_CONFIG=$config docker push -q "$target" >/dev/null \
        || die "registry: pushing $target failed"
    done
  done
  log "registry: $IMAGE_REPO:{latest,v2} pushed to $REGISTRY_OPEN and $REGISTRY_PRIVATE"
}

registries() {
  registry_packages
  registry_certificates
  mkdir -p "$REGISTRY_DIR"
  if [ ! -s "$REGISTRY_DIR/htpasswd" ] \
    || ! htpasswd -vbB "$REGISTRY_DIR/htpasswd" "$REGISTRY_USER" "$REGISTRY_PASSWORD" >/dev/null 2>&1; then
    htpasswd -Bbn "$REGISTRY_USER" "$REGISTRY_PASSWORD" >"$REGISTRY_DIR/htpasswd"
  fi
  registry_config open "$REGISTRY_OPEN" ""
  registry_config private "$REGISTRY_PRIVATE" "  tls: {certificate: $REGISTRY_DIR/tls/server.crt, key: $REGISTRY_DIR/tls/server.key}
auth:
  htpasswd: {realm: slipway-test, path: $REGISTRY_DIR/htpasswd}"
  registry_start open "$REGISTRY_OPEN" registry_open_up
  registry_start private "$REGISTRY_PRIVATE" registry_private_up
  registry_push_images
}

registries

# --- 7. images for Slipway's own stack --------------------------------------
# e2e/tests/it/on_swarm.rs runs deploy/stack.yml on the swarm. Its image is
# built by the test from the binaries under test (deploy/image.sh), on the
# base deploy/base.sh makes here with debootstrap; its database runs
# testkit/images/postgres, since `postgres:15` cannot be pulled.

POSTGRES_IMAGE=slipway-test/postgres:15

stack_images() {
  local base
  base=$("$ROOT/deploy/base.sh") || die "deploy/base.sh could not make the base image"
  log "image: base $base ready"
  if image_present "$POSTGRES_IMAGE"; then
    log "image: $POSTGRES_IMAGE already present"
  else
    docker build -q --build-arg "BASE=$base" -t "$POSTGRES_IMAGE" "$ROOT/testkit/images/postgres" >/dev/null 2>&1 \
      || die "building $POSTGRES_IMAGE from testkit/images/postgres failed"
    log "image: $POSTGRES_IMAGE built"
  fi
}

stack_images

echo "test-env: ready in ${SECONDS}s"
echo "DATABASE_URL=$PG_URL"
