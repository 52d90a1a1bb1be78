#!/usr/bin/env bash
# Runs Slipway's whole test suite on a Debian 12 machine, as root: installs and
# starts what the tests need (Docker engine in swarm mode, PostgreSQL, Node),
# checks formatting and lints, then runs every test against SQLite and
# PostgreSQL. Among them, api/tests/it/graphql_http.rs runs the reference
# GraphQL-over-HTTP audits (graphql-http, installed with `npm ci` into
# api/tests/graphql-http from its lock file) against a real API and fails on
# any MUST or SHOULD audit that does not pass.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/test-env.sh

export SLIPWAY_TEST_POSTGRES_URL="${SLIPWAY_TEST_POSTGRES_URL:-postgres://root@%2Fvar%2Frun%2Fpostgresql/postgres}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE=0

# Databases left behind by earlier runs.
stale=$(psql "$SLIPWAY_TEST_POSTGRES_URL" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'slipway_test_%'" || true)
for db in $stale; do
  psql "$SLIPWAY_TEST_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS \"$db\"" >/dev/null
done

command -v node >/dev/null && command -v npm >/dev/null \
  || { echo "test: node and npm are needed (scripts/test-env.sh installs them)" >&2; exit 1; }

echo "test: cargo fmt --check"
cargo fmt --all --check
echo "test: cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "test: cargo nextest"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

# The fuzz targets (fuzz/, cargo fuzz) need a nightly toolchain, which not
# every machine has: where there is one, each runs for a short while.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "test: fuzz targets, 10 s each"
  scripts/fuzz.sh 10
else
  echo "test: fuzz targets not run: they need a nightly toolchain (rustup toolchain install nightly; then scripts/fuzz.sh)"
fi
