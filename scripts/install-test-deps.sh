#!/usr/bin/env bash
# Installs what the test suite needs beyond Rust: Debian's Chromium and ChromeDriver for the
# console's browser tests, and PostgreSQL's server binaries for the PostgreSQL store tests
# (`scripts/pg-test-cluster.sh` starts a throwaway cluster from them). Idempotent; needs root
# (or sudo) and the Debian package mirrors.
set -euo pipefail
need=()
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  need+=(chromium chromium-driver)
fi
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  need+=(postgresql)
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
command -v chromium >/dev/null && chromium --version
ls /usr/lib/postgresql/*/bin/initdb
