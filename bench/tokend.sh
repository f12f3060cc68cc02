# bench/tokend.sh: sourced by the bench scripts (cpu-per-request.sh, ab.sh).
#
# start_tokend DIR SPEC starts tokend as make load does, in DIR (made if
# missing): SPEC is BINARY[=EXTRA FLAGS]; a policy that lets the service
# credential "load" mint any identity of [a-z0-9_] with an outgoing voice
# grant, the audit log in DIR, --log-level warn. It waits until tokend is
# ready, makes the credential, and sets TOKEND_PID, TOKEND_HTTP (its
# http://host:port), TOKEND_GRPC (host:port) and TOKEND_CRED (the
# credential's token); it fails when tokend does not come up.
start_tokend() {
	local d=$1 bin=${2%%=*} extra="" admin port
	[[ $2 == *=* ]] && extra=${2#*=}
	mkdir -p "$d"
	cat >"$d/policy.yaml" <<'P'
rules:
  - name: load
    principals: ["credential:load"]
    applications: ["*"]
    identities: {pattern: "^[a-z0-9_]+$"}
    grants:
      voice: {incoming: false, outgoing: true}
P
	port=$((20000 + RANDOM % 6000))
	admin=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
	# shellcheck disable=SC2086
	env -i PATH="$PATH" HOME="$HOME" \
		ACCOUNT_SID=ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa API_KEY=SKbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb \
		API_SECRET=cccccccccccccccccccccccccccccccc TWIML_APP_SID=APdddddddddddddddddddddddddddddddd \
		TOKEND_MASTER_KEY="load:$(head -c 32 /dev/urandom | base64)" TOKEND_ADMIN_TOKEN="$admin" \
		"$bin" --data-dir "$d/data" --http-addr "127.0.0.1:$port" --grpc-addr "127.0.0.1:$((port + 6000))" \
		--policy-file "$d/policy.yaml" --audit-log "$d/audit.log" --log-level warn $extra 2>"$d/log" &
	TOKEND_PID=$!
	TOKEND_HTTP="http://127.0.0.1:$port" TOKEND_GRPC="127.0.0.1:$((port + 6000))"
	for _ in $(seq 100); do curl -sf "$TOKEND_HTTP/readyz" >/dev/null && break; sleep 0.1; done
	TOKEND_CRED=$(curl -sf -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
		-d '{"name":"load"}' "$TOKEND_HTTP/v1/credentials" | sed 's/.*"token":"\([^"]*\)".*/\1/') || true
	if [ -z "$TOKEND_CRED" ]; then
		echo "$2 did not start: $(tail -3 "$d/log")" >&2
		return 1
	fi
}
