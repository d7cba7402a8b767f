#!/usr/bin/env bash
# Installs what the test suite needs beyond Rust: Debian's Chromium and ChromeDriver for the
# console's browser tests, and PostgreSQL's server binaries for the PostgreSQL store tests
# (`scripts/pg-test-cluster.sh` starts a throwaway cluster from them). Idempotent; needs root
# (or sudo) and the Debian package mirrors. Also `scim2-cli` (PyPI, which runs scim2-tester)
# in a virtualenv under target/, for the SCIM conformance test.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/scim2-venv
if [ ! -x "$venv/bin/scim2" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'scim2-cli==0.6.0' 'scim2-tester==0.5.2'
fi
"$venv/bin/scim2" --help >/dev/null
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
