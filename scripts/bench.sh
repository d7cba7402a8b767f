#!/usr/bin/env bash
# The benchmark (not a test, not in CI): release build, the simulator as its own process.
# With no arguments: 50,000 accounts, then 200,000 (the cost of a listing page must not grow
# with the number of accounts). Arguments go to both runs (see `accessrail-bench --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p testrail-sim -p accessrail-bench -p accessrail
target/release/accessrail-bench --users 50000 --groups 1000 "$@"
echo
target/release/accessrail-bench --users 200000 --groups 1000 "$@"
