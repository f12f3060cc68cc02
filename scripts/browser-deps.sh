#!/usr/bin/env bash
# Installs what the browser and interop tests need, on Debian 12 as root
# with only the package registries reachable: Chromium from Debian (when
# /usr/bin/chromium is missing) and the pinned npm packages of web/ and
# interop/node/. Safe to run again. Everything goes to stderr; the last
# (and only) line on stdout is Chromium's path, for TOKEND_TEST_CHROMIUM:
#
#   TOKEND_TEST_CHROMIUM=$(scripts/browser-deps.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

chromium=/usr/bin/chromium
if [ ! -x "$chromium" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q chromium >&2
fi
if [ ! -x "$chromium" ]; then
  echo "browser-deps: $chromium is still missing after apt-get install chromium" >&2
  exit 1
fi
"$chromium" --version >&2 2>/dev/null || true

for dir in web interop/node; do
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2
done

echo "$chromium"
