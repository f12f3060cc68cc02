#!/usr/bin/env bash
# ab.sh: two tokend builds (or one build with two sets of flags) side by
# side, server CPU per request in paired windows.
#
#   bench/ab.sh [-t get|post|grpc] [-p PAIRS] [-d SECONDS] [-n CALLS] A[=FLAGS] B[=FLAGS]
#
# Both are started as make load starts tokend (policy file, a service
# credential, audit log on, --log-level warn; FLAGS appended, e.g.
# "bin/tokend=--audit-required=false"), and stay up together. Each pair is
# one window of A and one of B, back to back, in turns A B / B A: wrk (2
# threads, 32 connections, SECONDS) for get and post, ghz (32 calls in
# flight over 2 connections, CALLS calls) for grpc. A window's CPU is the
# server's user+system time from /proc/<pid>/stat, divided by the
# requests answered. It prints every pair, and the median of B/A over the
# pairs with how many pairs B was cheaper in.
#
# Why pairs: on a shared 2-CPU VM the same binary's CPU per request moves
# by 20-30% from one 3 s window to the next (steal, where the generator's
# threads land), far more than most changes. Two windows a few seconds
# apart see much the same machine, and the median of their ratios is
# steady where means and single runs are not (an A/A run gives 1.00).
set -euo pipefail
target=get pairs=12 secs=3 calls=60000
while getopts t:p:d:n: o; do case $o in t) target=$OPTARG ;; p) pairs=$OPTARG ;; d) secs=$OPTARG ;; n) calls=$OPTARG ;; *) exit 2 ;; esac; done
shift $((OPTIND - 1))
[ $# -eq 2 ] || { sed -n 2,21p "$0"; exit 2; }
case $target in
get | post) command -v wrk >/dev/null || { echo "ab: wrk is not installed (scripts/wrk-install.sh)" >&2; exit 1; } ;;
grpc) command -v ghz >/dev/null || { echo "ab: ghz is not installed (scripts/ghz-install.sh)" >&2; exit 1; } ;;
*) echo "ab: -t get, post or grpc" >&2; exit 2 ;;
esac
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # user+system, clock ticks
hz=$(getconf CLK_TCK)
# shellcheck source=bench/tokend.sh
. "$(cd "$(dirname "$0")" && pwd)/tokend.sh"

pids=() https=() grpcs=() creds=()
# start I SPEC: tokend I (0 or 1) from SPEC, BINARY[=FLAGS].
start() {
	local i=$1 d="$work/t$1"
	start_tokend "$d" "$2" || exit 1
	pids[i]=$TOKEND_PID https[i]="$TOKEND_HTTP/token" grpcs[i]=$TOKEND_GRPC creds[i]=$TOKEND_CRED
	if [ "$target" = post ]; then
		printf 'wrk.method = "POST"\nwrk.body = "{\\"identity\\":\\"load_user\\"}"\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["Authorization"] = "Bearer %s"\n' "${creds[i]}" >"$d/req.lua"
	else
		printf 'wrk.method = "GET"\nwrk.headers["Authorization"] = "Bearer %s"\n' "${creds[i]}" >"$d/req.lua"
	fi
}

# window I: one window of tokend I; prints its CPU per request (µs).
window() {
	local i=$1 c0 c1 n
	c0=$(cpu "${pids[i]}")
	if [ "$target" = grpc ]; then
		ghz --insecure --call token.v1.TokenService.Mint -d '{}' -m "{\"authorization\":\"Bearer ${creds[i]}\"}" \
			-c 32 --connections 2 -n "$calls" "${grpcs[i]}" >/dev/null 2>&1
		n=$calls
	else
		n=$(wrk -t2 -c32 -d"${secs}s" -s "$work/t$i/req.lua" "${https[i]}" | awk '/requests in/ {print $1}')
	fi
	c1=$(cpu "${pids[i]}")
	awk -v c="$((c1 - c0))" -v hz="$hz" -v n="$n" 'BEGIN { printf "%.2f\n", c / hz / n * 1e6 }'
}

start 0 "$1"
start 1 "$2"
window 0 >/dev/null # warm-up
window 1 >/dev/null
echo "$target: A = $1, B = $2; µs of server CPU per request"
for k in $(seq "$pairs"); do
	if [ $((k % 2)) = 1 ]; then a=$(window 0) b=$(window 1); else b=$(window 1) a=$(window 0); fi
	echo "$a $b"
done | awk '
	{ r[NR] = $2 / $1; sa += $1; sb += $2; if ($2 < $1) less++
	  printf "pair %2d  A %6.2f  B %6.2f  B/A %.3f\n", NR, $1, $2, $2 / $1 }
	END {
		for (i = 1; i <= NR; i++) for (j = i + 1; j <= NR; j++) if (r[j] < r[i]) { t = r[i]; r[i] = r[j]; r[j] = t }
		med = NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2
		printf "mean A %.2f µs, B %.2f µs; median B/A %.3f; B cheaper in %d of %d pairs\n", sa / NR, sb / NR, med, less, NR
	}'
