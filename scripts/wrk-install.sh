#!/usr/bin/env bash
# Installs wrk (Debian's package, written in C), which `make load` uses to
# drive its HTTP targets (it falls back to its own Go generator without it).
# Does nothing when wrk is already on $PATH; installs it only as root (as
# .ci/run runs), else says how and exits 0: `make test` does not need it.
# Everything goes to stderr.
set -euo pipefail

if command -v wrk >/dev/null 2>&1; then
  echo "wrk-install: $(command -v wrk) is already installed" >&2
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "wrk-install: wrk is missing and this is not root: run 'apt-get install -y wrk' as root (make load falls back to its Go generator)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
apt-get install -y -q wrk >&2
if ! command -v wrk >/dev/null 2>&1; then
  echo "wrk-install: wrk is still missing after apt-get install wrk" >&2
  exit 1
fi
echo "wrk-install: installed $(command -v wrk)" >&2
