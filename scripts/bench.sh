#!/usr/bin/env bash
# The scan benchmark (not a test, not in CI): release build, simulator as its own process.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p testrail-sim -p accessrail-bench
exec target/release/accessrail-bench "$@"
