#!/usr/bin/env bash
# The headless browser the report test loads pages in (tests/jobs/test_report.py): Debian's Chromium. Installed once,
# from the distribution's packages, when missing; on a system without apt-get it says what to install instead.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
if command -v apt-get >/dev/null 2>&1; then
  echo "[browser] installing Debian's chromium (headless browser for the report test)"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq && $sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
else
  echo "[browser] no apt-get here: install Chromium (a 'chromium' on PATH) for tests/jobs/test_report.py" >&2
fi
