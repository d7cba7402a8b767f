#!/usr/bin/env bash
# The benchmark (not a test, not in CI): release build, the simulator as its own process.
# With no arguments: 50,000 accounts, then 200,000 (the cost of a listing page must not grow
# with the number of accounts). Arguments go to both runs (see `accessrail-bench --help`).
# At 50,000 it also runs scripts/python_baseline.py (the public `testrail-api` client into
# SQLite) against the same simulator, in a virtualenv under target/ (PyPI, once); set
# ACCESSRAIL_BENCH_NO_PYTHON=1 to skip it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p testrail-sim -p accessrail-bench -p accessrail
python_args=()
if [[ -z "${ACCESSRAIL_BENCH_NO_PYTHON:-}" ]] && command -v python3 >/dev/null; then
  venv=target/python-baseline
  if [[ ! -x $venv/bin/python ]] || ! $venv/bin/python -c 'import testrail_api' 2>/dev/null; then
    python3 -m venv "$venv" && "$venv/bin/pip" install -q 'testrail-api==1.14.0' ||
      echo "(no python baseline: cannot install testrail-api)"
  fi
  if $venv/bin/python -c 'import testrail_api' 2>/dev/null; then
    python_args=(--python "$venv/bin/python")
  fi
fi
target/release/accessrail-bench --users 50000 --groups 1000 "${python_args[@]}" "$@"
echo
target/release/accessrail-bench --users 200000 --groups 1000 "$@"
