#!/usr/bin/env bash
# Installs what the test suite needs beyond Rust: Debian's Chromium and ChromeDriver for the
# console's browser tests. Idempotent; needs root (or sudo) and the Debian package mirrors.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
chromium --version
chromedriver --version
