#!/usr/bin/env bash
# The README's test command: installs whatever the tests need that this
# machine lacks, then runs every test. A second run finds everything in
# place and starts the tests at once.
#
#   scripts/test.sh                  # set up, then `cargo nextest run --workspace`
#   scripts/test.sh -E 'test(sdk)'   # extra arguments go to cargo nextest run
#   scripts/test.sh --setup-only     # set up and stop
#
# What it installs, each only when missing:
#   - cargo-nextest (cargo install --locked);
#   - Debian packages: chromium and chromium-driver (the dashboard's and the
#     API docs' browser tests), prometheus (promtool lints /metrics),
#     bsdutils (`script`, the CLI shell's terminal test), docker-compose
#     and systemd (the deployment files' checks);
#   - a Python virtualenv with the SDKs pinned in scripts/test-requirements.txt
#     (the official openai SDK runs against /v1; schemathesis checks the
#     server against its OpenAPI document), in
#     ${XDG_CACHE_HOME:-~/.cache}/oneflow/test-venv, where the tests look
#     for it (ONEFLOW_PYTHON overrides).
# A later prerequisite (another SDK, a server's client, a check that a
# server answers) is added here, never in .ci/run alone.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '== %s\n' "$*"; }
fail() { printf 'scripts/test.sh: %s\n' "$*" >&2; exit 1; }

setup_only=0
if [ "${1:-}" = "--setup-only" ]; then
  setup_only=1
  shift
fi

# --- cargo-nextest ---------------------------------------------------------
if ! cargo nextest --version >/dev/null 2>&1; then
  say "cargo install cargo-nextest --locked"
  cargo install cargo-nextest --locked
fi

# --- Debian packages -------------------------------------------------------
# Each entry: a program the tests start, and the package that brings it.
packages=()
need() { command -v "$1" >/dev/null 2>&1 || [ -x "$1" ] || packages+=("$2"); }
need /usr/bin/chromium chromium
need /usr/bin/chromedriver chromium-driver
need promtool prometheus
need script bsdutils
need psql postgresql-client
# The coordination tests start (and kill) a Redis of their own.
need redis-server redis-server
need redis-cli redis-tools
# The deployment files' checks: compose validates deploy/compose.yaml,
# systemd-analyze the unit.
need docker-compose docker-compose
need systemd-analyze systemd
if [ "${#packages[@]}" -gt 0 ]; then
  cmd="apt-get update && apt-get install -y --no-install-recommends ${packages[*]}"
  if ! command -v apt-get >/dev/null 2>&1; then
    fail "the tests need the Debian packages ${packages[*]}, and this machine has no apt-get: install their equivalents, then run this again"
  fi
  if [ "$(id -u)" -eq 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    fail "the tests need the Debian packages ${packages[*]}; as root run: $cmd"
  fi
  say "apt-get install ${packages[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq \
    --no-install-recommends "${packages[@]}"
fi

# --- Python virtualenv with the SDKs ---------------------------------------
# Rebuilt only when the pinned requirements change: the venv keeps a copy
# of the file it was made from.
requirements=scripts/test-requirements.txt
venv="${XDG_CACHE_HOME:-$HOME/.cache}/oneflow/test-venv"
if ! cmp -s "$requirements" "$venv/requirements.txt" || [ ! -x "$venv/bin/python" ]; then
  command -v python3 >/dev/null 2>&1 || fail "the SDK tests need python3 (Debian: python3 python3-venv)"
  say "python virtualenv in $venv ($(grep -v '^#' "$requirements" | xargs))"
  rm -rf "$venv"
  python3 -m venv "$venv" ||
    fail "python3 -m venv failed: install Debian's python3-venv, then run this again"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/requirements.txt"
fi
export ONEFLOW_PYTHON="${ONEFLOW_PYTHON:-$venv/bin/python}"

# --- PostgreSQL --------------------------------------------------------------
# The PostgreSQL store's tests (actors/src/store/postgres/tests.rs) need a
# running server; each works in a schema of its own and drops it. They
# never skip, so say here, before the long build, when there is none.
export ONEFLOW_TEST_PG_URL="${ONEFLOW_TEST_PG_URL:-postgres://root@127.0.0.1/test}"
if ! psql "$ONEFLOW_TEST_PG_URL" -Atqc 'select 1' >/dev/null 2>&1; then
  fail "the PostgreSQL store's tests need a server at $ONEFLOW_TEST_PG_URL that lets this user create schemas (set ONEFLOW_TEST_PG_URL to another)"
fi

# --- Redis -------------------------------------------------------------------
# The shared-limit tests also use the machine's Redis (a key prefix each).
export ONEFLOW_TEST_REDIS_URL="${ONEFLOW_TEST_REDIS_URL:-redis://127.0.0.1:6379/}"
if ! redis-cli -u "$ONEFLOW_TEST_REDIS_URL" ping 2>/dev/null | grep -q PONG; then
  fail "the shared-limit tests need a Redis at $ONEFLOW_TEST_REDIS_URL (set ONEFLOW_TEST_REDIS_URL to another)"
fi

[ "$setup_only" -eq 1 ] && exit 0

# --- the tests -------------------------------------------------------------
say "cargo nextest run --workspace $*"
exec cargo nextest run --workspace "$@"
