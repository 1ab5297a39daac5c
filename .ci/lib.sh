# shellcheck shell=bash disable=SC2034
# (SC2034: the of_* variables are used by the scripts that source this file.)
# Shared helpers for .ci/test, .ci/demo and bench/run.  Source it, don't run it.
#
# Environment (all optional):
#   PG_CONFIG          pg_config of the PostgreSQL to use
#                      (default /usr/lib/postgresql/15/bin/pg_config)
#   ORDERFLOW_WORKDIR  work dir, writable by the postgres OS user
#                      (default /var/tmp/orderflow-build).  Holds:
#                        src/             build copy of the source tree (.ci/setup)
#                        cluster/         data directory of the throwaway cluster
#                        socket/          its unix socket directory
#                        postgresql.log   its server log
#   ORDERFLOW_PORT     port of the throwaway cluster (default 55432); it
#                      listens on the unix socket only, never on TCP
#   ORDERFLOW_KEEP=1   leave the cluster running on exit (and say how to reach it)
#   ORDERFLOW_PG_SETTINGS  extra postgresql.conf lines for the cluster

# runuser lives in /usr/sbin, which a non-login root shell may lack on PATH.
PATH=$PATH:/usr/sbin:/sbin
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
ORDERFLOW_WORKDIR=${ORDERFLOW_WORKDIR:-/var/tmp/orderflow-build}
ORDERFLOW_PORT=${ORDERFLOW_PORT:-55432}
export PG_CONFIG ORDERFLOW_WORKDIR ORDERFLOW_PORT

of_srcdir=$ORDERFLOW_WORKDIR/src
of_datadir=$ORDERFLOW_WORKDIR/cluster
of_sockdir=$ORDERFLOW_WORKDIR/socket
of_logfile=$ORDERFLOW_WORKDIR/postgresql.log
# (empty until PostgreSQL is installed: .ci/setup sources this file first)
of_bindir=$("$PG_CONFIG" --bindir 2>/dev/null) || of_bindir=

# Who talks to the cluster: the postgres OS user when we are root (initdb
# refuses to run as root), otherwise whoever runs the script.
if [ "$(id -u)" -eq 0 ]; then
	of_osuser=postgres
else
	of_osuser=$(id -un)
fi

of_log() { printf '==> %s\n' "$*" >&2; }
of_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# of_as_pg CMD...: run CMD as the cluster's OS user, with the server's
# binaries first on PATH and libpq pointed at the cluster ($of_sockdir,
# $ORDERFLOW_PORT).  Extra variables can be passed as leading NAME=value
# words, as with env.
of_as_pg() {
	local -a envs=(
		"PATH=$of_bindir:$PATH"
		"PG_CONFIG=$PG_CONFIG"
		"PGHOST=$of_sockdir"
		"PGPORT=$ORDERFLOW_PORT"
		"PGUSER=$of_osuser"
	)
	# Run from a directory postgres can enter (the caller's may be root-only,
	# which initdb and psql complain about); commands take absolute paths.
	(
		cd "$ORDERFLOW_WORKDIR" 2>/dev/null || cd /
		if [ "$(id -u)" -eq 0 ]; then
			runuser -u postgres -- env "${envs[@]}" "$@"
		else
			env "${envs[@]}" "$@"
		fi
	)
}

# of_psql ARGS...: psql against the cluster, stopping at the first error.
of_psql() {
	of_as_pg psql -X -v ON_ERROR_STOP=1 "$@"
}

of_cluster_running() {
	[ -f "$of_datadir/postmaster.pid" ] &&
		of_as_pg pg_ctl -D "$of_datadir" status >/dev/null 2>&1
}

# of_cluster_start: initdb a fresh cluster in $ORDERFLOW_WORKDIR/cluster and
# start it.  Any cluster left there by an earlier run is stopped and removed.
# Registers of_cleanup to run on exit.  Returns non-zero (after printing why)
# when the cluster cannot be started.
of_cluster_start() {
	of_cluster_stop
	rm -rf "$of_datadir" "$of_sockdir"
	mkdir -p "$ORDERFLOW_WORKDIR" "$of_sockdir" || return 1
	if [ "$(id -u)" -eq 0 ]; then
		chown postgres: "$ORDERFLOW_WORKDIR" "$of_sockdir" || return 1
	fi
	chmod 700 "$of_sockdir"

	trap of_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	of_log "initdb $of_datadir"
	# --no-sync only skips flushing initdb's own files; the server runs with fsync on.
	if ! of_as_pg initdb -D "$of_datadir" -U "$of_osuser" --auth=trust \
		--encoding=UTF8 --locale=C.UTF-8 --no-sync >"$ORDERFLOW_WORKDIR/initdb.log" 2>&1; then
		cat "$ORDERFLOW_WORKDIR/initdb.log" >&2
		echo "error: initdb failed" >&2
		return 1
	fi

	of_as_pg tee -a "$of_datadir/postgresql.conf" >/dev/null <<-EOF || return 1

		# throwaway orderflow cluster (.ci/lib.sh)
		port = $ORDERFLOW_PORT
		listen_addresses = ''
		unix_socket_directories = '$of_sockdir'
		shared_preload_libraries = 'orderflow,pg_cron'
		cron.database_name = 'postgres'
		fsync = on
		max_connections = 200
		max_prepared_transactions = 10
		log_line_prefix = '%m [%p] %q%u@%d '
		${ORDERFLOW_PG_SETTINGS:-}
	EOF

	of_log "starting PostgreSQL on port $ORDERFLOW_PORT (socket $of_sockdir, log $of_logfile)"
	rm -f "$of_logfile"
	if ! of_as_pg pg_ctl -D "$of_datadir" -l "$of_logfile" -w -t 60 start >/dev/null; then
		of_tail "$of_logfile" 30 >&2
		echo "error: the cluster did not start" >&2
		return 1
	fi
}

# of_cluster_stop: stop the throwaway cluster if it runs.
of_cluster_stop() {
	if of_cluster_running; then
		of_as_pg pg_ctl -D "$of_datadir" -m fast -w -t 60 stop >/dev/null ||
			of_as_pg pg_ctl -D "$of_datadir" -m immediate stop >/dev/null || true
	fi
}

# of_cleanup: exit trap.  Stops the cluster and removes its data directory,
# unless ORDERFLOW_KEEP=1.
of_cleanup() {
	local rc=$?
	if [ "${ORDERFLOW_KEEP:-0}" = 1 ]; then
		if of_cluster_running; then
			of_log "ORDERFLOW_KEEP=1: cluster left running; connect with:"
			of_log "  runuser -u postgres -- $of_bindir/psql -h $of_sockdir -p $ORDERFLOW_PORT"
			of_log "  stop with: runuser -u postgres -- $of_bindir/pg_ctl -D $of_datadir stop"
		fi
	else
		of_cluster_stop
		rm -rf "$of_datadir"
	fi
	return $rc
}

# of_tail FILE [N]: print the last N lines of FILE under a header, if it exists.
of_tail() {
	[ -s "$1" ] || return 0
	printf '\n----- %s (last %s lines) -----\n' "$1" "${2:-60}"
	tail -n "${2:-60}" "$1"
}
