#!/usr/bin/env bash
# Random SQL against orderflow: sqlsmith generates queries over the tables
# of a database with orderflow and its regression data, calling every
# function it finds (orderflow's C functions included) with whatever
# arguments type-check, NULLs among them.  Errors are expected; a crash is
# not.  Each seed is one test: it passes when sqlsmith ends normally, the
# server log shows no backend killed by a signal and no PANIC, and the
# server still answers.
#
#   test/sqlsmith/run.sh LOGFILE [SEEDS] [QUERIES]
#
# LOGFILE is the server's log; SEEDS defaults to "1 2 3" (fixed, so a run
# can be repeated), QUERIES per seed to 5000.  Uses psql and sqlsmith from
# PATH and the usual PG* variables.  Database orderflow_sqlsmith is made
# afresh from contrib_regression (left by the regression tests) when it
# exists, else with CREATE EXTENSION orderflow only.  Prints
# "sqlsmith: N passed, N failed" last; exits non-zero if any seed failed.
set -uo pipefail

logfile=${1:?usage: run.sh LOGFILE [SEEDS] [QUERIES]}
seeds=${2:-1 2 3}
queries=${3:-5000}
db=orderflow_sqlsmith

psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

psql_q -d postgres -c 'SET client_min_messages = warning' -c "DROP DATABASE IF EXISTS $db" || exit 1
if [ "$(psql -XAtq -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = 'contrib_regression'")" = 1 ]; then
	psql_q -d postgres -c "CREATE DATABASE $db TEMPLATE contrib_regression" || exit 1
else
	psql_q -d postgres -c "CREATE DATABASE $db" || exit 1
	psql_q -d "$db" -c 'CREATE EXTENSION orderflow' || exit 1
fi

passed=0
failed=0
for seed in $seeds; do
	start=$(stat -c %s "$logfile")
	out=$(timeout 600 sqlsmith --target="dbname=$db" --seed="$seed" --max-queries="$queries" \
		--exclude-catalog --verbose 2>&1)
	st=$?
	crashes=$(tail -c +"$((start + 1))" "$logfile" | grep -E -A1 'terminated by signal|PANIC:' || true)
	if [ "$st" -eq 0 ] && [ -z "$crashes" ] && psql -XAtq -d "$db" -c 'SELECT 1' >/dev/null 2>&1; then
		passed=$((passed + 1))
		echo "ok $seed - sqlsmith seed $seed, $queries queries, no crash"
	else
		failed=$((failed + 1))
		echo "not ok $seed - sqlsmith seed $seed (exit $st)"
		[ -n "$crashes" ] && printf '%s\n' "$crashes"
		printf '%s\n' "$out" | tr '\r' '\n' | tail -n 40
	fi
done
echo "sqlsmith: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
