#!/usr/bin/env bash
# Where a request's CPU goes on PostgreSQL: microseconds of CPU per request
# spent by the service, by wrk and by the rest of the machine (PostgreSQL and
# the kernel work charged to it), for a list, a get and a 403 that touches no
# database; then the same for pgbench running the statements that answer a
# list and a get (bench/pgbench/*_one_statement.sql), split into pgbench and
# the rest. With both cores saturated, throughput is 2 s ÷ the total, so this
# shows which share of a request each side must shed for a given ratio to
# the pgbench ceiling.
#
#   bench/cpu_split.sh
#   BINARY=/tmp/old/todo-api CONNECTIONS=10 DURATION=6 bench/cpu_split.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${CONNECTIONS:-10}
DURATION=${DURATION:-6}
PORT=${PORT:-18142}
PG=${PG:-postgres://postgres@127.0.0.1:5432}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
source bench/env.sh
release_binary
scratch_space
export RUST_LOG=error
psql -q "$PG/postgres" -c 'DROP DATABASE IF EXISTS todo_bench_cpu' -c 'CREATE DATABASE todo_bench_cpu' 2>/dev/null
export DATABASE_URL=$PG/todo_bench_cpu

# Busy CPU of the whole machine, and of one process, in clock ticks.
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
process_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ticks_per_second=$(getconf CLK_TCK)

# "label requests machine_ticks process_ticks client_seconds" -> one line.
report() {
    awk -v label="$1" -v n="$2" -v machine="$3" -v own="$4" -v client="$5" -v hz="$ticks_per_second" \
        -v duration="$DURATION" 'BEGIN {
        us = 1e6 / hz / n; client_us = client * 1e6 / n
        printf "%-22s %9.0f/s %8.1f %8.1f %8.1f %8.1f\n", label, n / duration,
            machine * us, own * us, client_us, machine * us - own * us - client_us }'
}

PORT=$PORT $BINARY serve &
server=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
echo "bench $($BINARY token --sub bench --ttl 2h)" >"$work/tokens"
python3 bench/seed.py "http://127.0.0.1:$PORT" "$work/tokens" 20 >/dev/null
token=$(awk '{print $2}' "$work/tokens")
task=$(psql -Atq "$DATABASE_URL" -c "SELECT id FROM tasks WHERE user_id = 'bench' LIMIT 1")
psql -q "$DATABASE_URL" -c 'VACUUM ANALYZE'

echo "CPU per request at $CONNECTIONS connections, microseconds (2 cores: 2 000 000 per second)"
printf '%-22s %11s %8s %8s %8s %8s\n' request throughput total service wrk rest
for request in list get 403; do
    case $request in
        list) url=api/bench/tasks ;;
        get) url=api/bench/tasks/$task ;;
        403) url=api/someone-else/tasks ;;
    esac
    wrk -t2 -c"$CONNECTIONS" -d2s -H "Authorization: Bearer $token" "http://127.0.0.1:$PORT/$url" >/dev/null
    machine=$(machine_ticks) own=$(process_ticks "$server")
    out=$({ /usr/bin/time -f "client %e %U %S" wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" \
        -H "Authorization: Bearer $token" "http://127.0.0.1:$PORT/$url"; } 2>&1)
    machine=$(($(machine_ticks) - machine)) own=$(($(process_ticks "$server") - own))
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    client=$(awk '/^client/ {print $3 + $4}' <<<"$out")
    report "$request" "$n" "$machine" "$own" "$client"
done
kill "$server"
wait "$server" 2>/dev/null || true
server=

printf '%-22s %11s %8s %8s %8s %8s\n' statements throughput total "" pgbench rest
for script in bench/pgbench/list_one_statement.sql bench/pgbench/get_one_statement.sql; do
    machine=$(machine_ticks)
    out=$({ /usr/bin/time -f "client %e %U %S" pgbench -n -M prepared -c "$CONNECTIONS" -j 2 -T "$DURATION" \
        -D user=bench -D task="$task" -f "$script" "$DATABASE_URL"; } 2>&1)
    machine=$(($(machine_ticks) - machine))
    n=$(awk '/number of transactions actually processed/ {print $NF}' <<<"$out")
    client=$(awk '/^client/ {print $3 + $4}' <<<"$out")
    report "pgbench $(basename "$script" _one_statement.sql)" "$n" "$machine" 0 "$client"
done
