#!/usr/bin/env bash
# cpu-per-request.sh: server CPU per GET /token under wrk, for one or more
# tokend binaries and the bare net/http server of make load, alternated.
#
#   bench/cpu-per-request.sh [-n ROUNDS] [-d SECONDS] TOKEND_BINARY[=EXTRA FLAGS]...
#
# Each binary is started as make load starts tokend (policy file, a service
# credential, audit log on, --log-level warn; EXTRA FLAGS appended, e.g.
# "bin/tokend=--audit-required=false"), warmed for 2 s, then driven by wrk
# (2 threads, 32 connections) for SECONDS; the CPU is user+system from
# /proc/<pid>/stat over the measured window, divided by the requests wrk
# counted. A quicker, narrower tool than make load (one target, no gRPC);
# the same caveat: the figures move with whatever else the machine does.
set -euo pipefail
rounds=3 secs=10
while getopts n:d: o; do case $o in n) rounds=$OPTARG ;; d) secs=$OPTARG ;; *) exit 2 ;; esac; done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { sed -n 2,14p "$0"; exit 2; }
command -v wrk >/dev/null || { echo "cpu-per-request: wrk is not installed (scripts/wrk-install.sh)" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/tokend.sh
. "$here/tokend.sh"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
(cd "$here" && go build -o "$work/loadbench" ./load)

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # user+system, clock ticks
hz=$(getconf CLK_TCK)

# measure NAME PID URL LUA: one warm-up and one measured wrk run.
measure() {
	wrk -t2 -c32 -d2s -s "$4" "$3" >/dev/null 2>&1
	local c0 c1 out n
	c0=$(cpu "$2")
	out=$(wrk -t2 -c32 -d"${secs}s" -s "$4" "$3" 2>&1)
	c1=$(cpu "$2")
	n=$(awk '/requests in/ {print $1}' <<<"$out")
	awk -v name="$1" -v c="$((c1 - c0))" -v hz="$hz" -v n="$n" -v s="$secs" \
		'BEGIN { printf "%-40s %8.0f req/s %7.1f µs CPU/req\n", name, n / s, c / hz / n * 1e6 }'
}

ceiling() {
	mkfifo "$work/ceil.in"
	(sleep 100000 >"$work/ceil.in") &
	local keep=$!
	"$work/loadbench" -serve-http-ceiling <"$work/ceil.in" >"$work/ceil.out" &
	local pid=$!
	for _ in $(seq 50); do [ -s "$work/ceil.out" ] && break; sleep 0.1; done
	echo 'wrk.method = "GET"' >"$work/ceil.lua"
	measure "bare net/http server" "$pid" "http://$(awk '{print $2}' "$work/ceil.out")/token" "$work/ceil.lua"
	kill "$keep" "$pid"
	wait "$pid" 2>/dev/null || true
	rm -f "$work/ceil.in"
}

tokend() {
	local d="$work/tokend"
	rm -rf "$d"
	start_tokend "$d" "$1"
	printf 'wrk.method = "GET"\nwrk.headers["Authorization"] = "Bearer %s"\n' "$TOKEND_CRED" >"$d/get.lua"
	local extra=""
	[[ $1 == *=* ]] && extra=${1#*=}
	measure "$(basename "${1%%=*}")${extra:+ $extra}" "$TOKEND_PID" "$TOKEND_HTTP/token" "$d/get.lua"
	kill "$TOKEND_PID"
	wait "$TOKEND_PID" 2>/dev/null || true
}

for r in $(seq "$rounds"); do
	echo "round $r"
	ceiling
	for b in "$@"; do tokend "$b"; done
done
