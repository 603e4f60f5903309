#!/usr/bin/env bash
# The headless browser for the search-page test (tests/jina_vdb/test_serve_page.py):
# Chromium + chromedriver from the distribution's packages, installed with apt-get when
# this runs as root or with password-less sudo. Otherwise nothing is installed and that
# test is skipped, saying why. Never fails the run.
set -uo pipefail
if command -v chromedriver >/dev/null && { command -v chromium || command -v chromium-browser || command -v google-chrome; } >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "browser: no apt-get here; the search-page test will be skipped" >&2
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "browser: not root and no password-less sudo; the search-page test will be skipped" >&2
  exit 0
fi
if ! { "${as_root[@]}" apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
  || { "${as_root[@]}" apt-get update -q >/dev/null 2>&1 \
    && "${as_root[@]}" apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; }; }; then
  echo "browser: apt-get could not install chromium chromium-driver; the search-page test will be skipped" >&2
fi
exit 0
