#!/usr/bin/env bash
# postgres-start.sh: make sure a local PostgreSQL server answers on
# 127.0.0.1 for the tests of server/storage/postgres, and print the DSN to
# reach it as the last line of stdout (everything else goes to stderr):
#
#	export TOKEND_TEST_POSTGRES=$(scripts/postgres-start.sh)
#
# On Debian (12 or later), run as root (or with sudo available), it:
#   - installs PostgreSQL from Debian's packages if its binaries are missing
#     (apt-get update, then apt-get install -y postgresql);
#   - uses the "main" cluster of the newest installed major version, creating
#     it on port 5432 with pg_createcluster if it does not exist (a fresh
#     install creates it);
#   - lets user postgres connect over TCP from 127.0.0.1 and ::1 without a
#     password (a "trust" line at the top of pg_hba.conf, marked so that it
#     is added once);
#   - starts the cluster unless it is running, reloading it if pg_hba.conf
#     changed, and waits until pg_isready answers.
#
# It is idempotent: running it again on a running, configured cluster only
# checks it and prints the DSN again. Trust authentication is for a test
# machine only: never run this on a server that holds real data.
#
# Environment:
#   TOKEND_PG_CLUSTER  name of the cluster to use (default main)
#   TOKEND_PG_PORT     port of the cluster if it has to be created (default
#                      5432); an existing cluster keeps its port, which the
#                      DSN then names
#   TOKEND_PG_TIMEOUT  seconds to wait for the server to answer (default 60)
set -euo pipefail

log() { printf 'postgres-start: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# as_root runs a command as root: directly when we are root, else via sudo.
as_root() {
	if [[ ${EUID} -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo -n "$@"
	else
		die "must run as root (or with sudo) to run: $*"
	fi
}

# have_server reports whether the server binaries and Debian's cluster tools
# are installed.
have_server() {
	command -v pg_ctlcluster >/dev/null 2>&1 &&
		command -v pg_lsclusters >/dev/null 2>&1 &&
		command -v pg_isready >/dev/null 2>&1 &&
		command -v psql >/dev/null 2>&1 &&
		compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

# cluster_field prints a column of pg_lsclusters for cluster $1/$2: 1 is
# the version, 3 the port, 4 the status.
cluster_field() {
	pg_lsclusters --no-header 2>/dev/null |
		awk -v v="$1" -v c="$2" -v f="$3" '$1 == v && $2 == c {print $f}'
}

# main does all the work with its stdout sent to stderr, and sets dsn. The
# redirection is done by bash around the call, with the real stdout saved on
# a close-on-exec descriptor: no process started here (the postmaster above
# all, when apt-get or pg_ctlcluster starts it) inherits the stdout that a
# caller's $(...) reads, which would otherwise never see its end.
dsn=
main() {
	port_wanted=${TOKEND_PG_PORT:-5432}
	timeout=${TOKEND_PG_TIMEOUT:-60}
	marker='# tokend: trust local TCP connections of user postgres (scripts/postgres-start.sh)'

	# 1. Install the server if it is missing.
	if ! have_server; then
		log "PostgreSQL is not installed: installing it from Debian's packages"
		export DEBIAN_FRONTEND=noninteractive
		as_root apt-get update
		as_root apt-get install -y postgresql
		have_server || die "PostgreSQL binaries still missing after apt-get install"
	fi

	# 2. The newest installed major version and its main cluster.
	version=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/postgres' |
		awk -F/ '{print $5}' | sort -V | tail -n 1)
	[[ -n ${version} ]] || die "no PostgreSQL server version found under /usr/lib/postgresql"
	cluster=${TOKEND_PG_CLUSTER:-main}

	if [[ -z $(cluster_field "${version}" "${cluster}" 1) ]]; then
		log "creating cluster ${version}/${cluster} on port ${port_wanted}"
		as_root pg_createcluster --port "${port_wanted}" "${version}" "${cluster}"
	fi
	port=$(cluster_field "${version}" "${cluster}" 3)
	[[ -n ${port} ]] || die "cluster ${version}/${cluster} not listed by pg_lsclusters"
	if [[ ${port} != "${port_wanted}" ]]; then
		log "note: cluster ${version}/${cluster} listens on port ${port}, not ${port_wanted}"
	fi

	# 3. Trust TCP connections of user postgres from the loopback addresses.
	# pg_hba.conf is read top down and the first matching line wins, so the
	# lines go at the top.
	hba=/etc/postgresql/${version}/${cluster}/pg_hba.conf
	[[ -f ${hba} ]] || die "${hba} not found"
	hba_changed=false
	if ! as_root grep -qxF "${marker}" "${hba}"; then
		log "adding trust authentication for user postgres on 127.0.0.1 and ::1 to ${hba}"
		tmp=$(mktemp)
		trap 'rm -f "${tmp}"' EXIT
		{
			printf '%s\n' "${marker}"
			printf 'host\tall\tpostgres\t127.0.0.1/32\ttrust\n'
			printf 'host\tall\tpostgres\t::1/128\ttrust\n'
			printf '\n'
			as_root cat "${hba}"
		} >"${tmp}"
		# Overwrite in place: keeps the file's owner and mode.
		as_root cp "${tmp}" "${hba}"
		hba_changed=true
	fi

	# 4. Start the cluster, or reload it if it runs and pg_hba.conf changed.
	status=$(cluster_field "${version}" "${cluster}" 4)
	case ${status} in
	online*)
		if ${hba_changed}; then
			log "reloading cluster ${version}/${cluster}"
			as_root pg_ctlcluster "${version}" "${cluster}" reload
		else
			log "cluster ${version}/${cluster} already running on port ${port}"
		fi
		;;
	*)
		log "starting cluster ${version}/${cluster} on port ${port}"
		as_root pg_ctlcluster "${version}" "${cluster}" start
		;;
	esac

	# 5. Wait until the server accepts connections over TCP, then until the DSN
	# logs in (a reload of pg_hba.conf takes effect asynchronously).
	dsn="postgres://postgres@127.0.0.1:${port}/postgres?sslmode=disable"
	deadline=$((SECONDS + timeout))
	until pg_isready -q -h 127.0.0.1 -p "${port}" -U postgres -d postgres -t 2 &&
		PGCONNECT_TIMEOUT=2 psql -X -q -w -d "${dsn}" -c 'SELECT 1' >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			die "PostgreSQL on 127.0.0.1:${port} did not accept ${dsn} within ${timeout}s (see /var/log/postgresql/postgresql-${version}-${cluster}.log)"
		fi
		sleep 0.5
	done
	log "PostgreSQL ${version} is ready on 127.0.0.1:${port}"
}

main "$@" 1>&2
printf '%s\n' "${dsn}"
