#!/usr/bin/env bash
# Starts Slipway's API on embedded SQLite under ./.slipway, creating its JWT
# secret on first start and printing an admin token.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${SLIPWAY_DATA:-.slipway}"
mkdir -p "$data"
chmod 700 "$data"
if [ ! -s "$data/jwt-secret" ]; then
  (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$data/jwt-secret")
  echo "up: created $data/jwt-secret"
fi
cargo build --release --locked -p slipway-api
bin=target/release/slipway-api
export SLIPWAY_JWT_SECRET_FILE="$data/jwt-secret"
export SLIPWAY_DATABASE_URL="${SLIPWAY_DATABASE_URL:-sqlite://$data/slipway.db?mode=rwc}"
export SLIPWAY_LISTEN="${SLIPWAY_LISTEN:-127.0.0.1:8700}"
echo "up: GraphiQL at http://$SLIPWAY_LISTEN/graphql"
echo "up: admin token (valid 30 days):"
"$bin" token --role admin --subject admin
exec "$bin" serve
