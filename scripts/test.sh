#!/usr/bin/env bash
# Set up a fresh machine for the test suite and run it: Python deps (Ray included), Debian's
# Chromium for the browser test, then lint, type check and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
# Ray (optional at run time) so the Ray engine's tests run: ~45 s and 440 MB on a fresh machine.
python -m pip install --quiet --disable-pip-version-check -r requirements-scale.txt
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install chromium; the browser test will be skipped" >&2
  fi
fi
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1
python -m ruff check demo tests app.py scripts
python -m mypy demo app.py
python -m pytest "$@"
