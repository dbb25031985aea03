#!/usr/bin/env bash
# Create or refresh the project's virtual environment (.venv). Safe to re-run: it reinstalls only when
# pyproject.toml or constraints.txt changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${I2I_VENV:-.venv}
PYTHON=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
stamp="$VENV/.i2i-installed"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[venv] installing i2i and its pinned dependencies into $VENV (first run: a few minutes)"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -c constraints.txt -e ".[demo,tune,test]"
  echo "$want" > "$stamp"
fi
