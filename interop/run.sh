#!/usr/bin/env bash
# Interop test (make interop-test): builds tokend, starts it on free
# loopback ports with the conformance credentials of testdata/conformance.json
# as its seed and a temporary data dir, and runs the Node checks in
# interop/node against it (jsonwebtoken verifies, twilio's AccessToken is the
# reference). tokend is stopped at the end, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
GO="${GO:-go}"

tmp=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ ! -f interop/node/node_modules/.package-lock.json ] || [ interop/node/package-lock.json -nt interop/node/node_modules/.package-lock.json ]; then
  (cd interop/node && npm ci --no-audit --no-fund --loglevel=error) >&2
fi

"$GO" build -o "$tmp/tokend" ./cmd/tokend

# The seed: the four variables of the Twilio Function tokend replaces.
eval "$(node -e '
  const c = JSON.parse(require("fs").readFileSync("testdata/conformance.json", "utf8")).credentials;
  const q = (s) => "\x27" + String(s).replace(/\x27/g, "\x27\\\x27\x27") + "\x27";
  console.log(`export ACCOUNT_SID=${q(c.account_sid)} API_KEY=${q(c.api_key_sid)} API_SECRET=${q(c.api_secret)} TWIML_APP_SID=${q(c.application_sid)}`);
')"
TOKEND_MASTER_KEY=$("$tmp/tokend" keygen)
export TOKEND_MASTER_KEY

# Port 0: the kernel picks free ports; tokend logs the addresses it got.
"$tmp/tokend" --data-dir "$tmp/data" --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 \
  --log-format json --log-level info 2>"$tmp/tokend.log" &
pid=$!

http_addr=""
for _ in $(seq 1 300); do
  http_addr=$(sed -n 's/.*"msg":"tokend serving".*"http_addr":"\([^"]*\)".*/\1/p' "$tmp/tokend.log" | head -n1)
  [ -n "$http_addr" ] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "interop: tokend exited before serving:" >&2
    cat "$tmp/tokend.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$http_addr" ]; then
  echo "interop: tokend did not start serving in 30 s:" >&2
  cat "$tmp/tokend.log" >&2
  exit 1
fi
echo "interop: tokend serving on http://$http_addr" >&2

status=0
TOKEND_URL="http://$http_addr" node --test interop/node/ || status=$?
if [ "$status" -ne 0 ]; then
  echo "interop: FAILED; tokend's log:" >&2
  tail -n 50 "$tmp/tokend.log" >&2
fi
exit "$status"
