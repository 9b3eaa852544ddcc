#!/usr/bin/env bash
# Builds the release `oneflow` binary, then runs the load bench against it.
# Usage (from anywhere in the repository):
#   bash benches/load.sh
#   LOAD_SECS=5 LOAD_CONCURRENCY=32 bash benches/load.sh
# Environment (passed through): ONEFLOW_BIN, LOAD_SECS, LOAD_WARMUP_SECS,
# LOAD_CONCURRENCY, LOAD_USERS, LOAD_THREADS. See benches/load.rs.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release -p oneflow-web --bin oneflow
cargo bench -p oneflow-web --bench load
