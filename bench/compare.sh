#!/usr/bin/env bash
# Throughput and tail latency of list, get and create at several connection
# counts, for one or more builds side by side, on SQLite or PostgreSQL; the
# server's peak memory; and on PostgreSQL, pgbench running the statements
# that answer a list, a get and a create (bench/pgbench/*.sql, prepared, same
# concurrency, same data) as the ceiling each endpoint is measured against.
#
#   bench/compare.sh                                   # this build, SQLite
#   DATABASE=postgres bench/compare.sh
#   BINARIES="/tmp/old/todo-api target/release/todo-api" bench/compare.sh
#                                 # builds are named by their directory
#   CONNECTIONS="10 100" DURATION=5s TASKS=20 bench/compare.sh
#   BIG_TASKS=0 bench/compare.sh     # skip the large-user comparison
#   WORKLOADS="get list" bench/compare.sh   # some of: list get create spread
#
# The large-user comparison inserts BIG_TASKS (100 000) tasks for a second
# user straight into the database and prints, for the default list, each
# sort, the status filter and a search, the p50 at 10 connections of that
# user against the 20-task one, and the ratio.
#
# wrk (2 threads) runs on the same machine as the server and shares its cores.
set -euo pipefail
cd "$(dirname "$0")/.."

DATABASE=${DATABASE:-sqlite}
CONNECTIONS=${CONNECTIONS:-10 100 1000}
DURATION=${DURATION:-10s}
TASKS=${TASKS:-20}
PORT=${PORT:-18140}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
BIG_TASKS=${BIG_TASKS:-100000}
WORKLOADS=${WORKLOADS:-list get create spread}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
if [[ -z ${BINARIES:-} ]]; then
    cargo build --release -q
    BINARIES=target/release/todo-api
fi
ulimit -n 16384

source bench/env.sh
scratch_space
export RUST_LOG=error
export MAX_CONNECTIONS=5000

cat >"$work/create.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"title":"bench create","priority":"high","tags":["bench"]}'
EOF

# Creates spread over users (TOKENS="user=token ..."), one user per request
# in turn: writes of different users do not wait for each other.
cat >"$work/spread.lua" <<'EOF'
local tokens, users, n = {}, {}, 0
for user, token in string.gmatch(os.getenv("TOKENS"), "(%S+)=(%S+)") do
    table.insert(users, user); table.insert(tokens, token)
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"title":"bench create","priority":"high","tags":["bench"]}'
request = function()
    n = n % #tokens + 1
    wrk.headers["Authorization"] = "Bearer " .. tokens[n]
    return wrk.format(nil, "/api/" .. users[n] .. "/tasks")
end
EOF

# wrk's median latency.
p50() {
    wrk -t2 -c10 -d"$DURATION" --latency -H "Authorization: Bearer $1" "$2" |
        awk '/^ +50%/ {print $2}'
}

# A wrk latency ("812.00us", "6.71ms", "1.02s") in microseconds.
micros() {
    awk -v t="$1" 'BEGIN {
        if (t ~ /us$/) m = 1; else if (t ~ /ms$/) m = 1000; else m = 1000000
        sub(/[a-z]+$/, "", t); print t * m }'
}

# wrk's summary as "rps p99 errors".
summarise() {
    awk '/Requests\/sec/ {rps=$2}
         /^ +99%/ {p99=$2}
         /Socket errors/ {err=$4+$6+$8+$10; gsub(",","",err)}
         /Non-2xx/ {non2xx=$5}
         END {printf "%9.0f %9s %6d\n", rps, p99, err+non2xx}'
}

# The creates of a run would grow the lists of the next one. On PostgreSQL the
# deleted rows (and the count updates) stay behind as dead tuples until
# autovacuum comes, which would slow the next run's lists: vacuum now.
forget_creates() {
    local sql="DELETE FROM tasks WHERE title = 'bench create'"
    if [[ $DATABASE == postgres ]]; then
        psql -q "$DATABASE_URL" -c "$sql" -c "VACUUM ANALYZE"
    else
        python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()" \
            "$work/bench.db" "$sql"
    fi
}

pg_clients=$(($(psql -Atq "$PG/postgres" -c 'SHOW max_connections' 2>/dev/null || echo 100) - 20))
printf '%-12s %-28s %6s %9s %9s %6s\n' build workload conns rps p99 errors
for bin in $BINARIES; do
    # A build is named by its directory (target/release: "release").
    label=$(basename "$(dirname "$bin")")
    if [[ $DATABASE == postgres ]]; then
        psql -q "$PG/postgres" -c 'DROP DATABASE IF EXISTS todo_bench_compare' \
            -c 'CREATE DATABASE todo_bench_compare'
        export DATABASE_URL=$PG/todo_bench_compare
    else
        rm -f "$work"/bench.db*
        export DATABASE_URL="sqlite://$work/bench.db?mode=rwc"
    fi
    PORT=$PORT $bin serve &
    server=$!
    for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
    echo "bench $($bin token --sub bench --ttl 2h)" >"$work/tokens"
    python3 bench/seed.py "http://127.0.0.1:$PORT" "$work/tokens" "$TASKS" >/dev/null
    token=$(awk '{print $2}' "$work/tokens")
    auth="Authorization: Bearer $token"
    TOKENS=$(for n in $(seq 0 9); do echo "spread$n=$($bin token --sub "spread$n" --ttl 2h)"; done | tr '\n' ' ')
    export TOKENS
    ids=$(curl -fs -H "$auth" "http://127.0.0.1:$PORT/api/bench/tasks?limit=100" |
        python3 -c 'import json,sys; print(*(t["id"] for t in json.load(sys.stdin)["items"]))')
    task=${ids%% *}
    # Half completed, like the large user's.
    i=0
    for id in $ids; do
        ((i++ % 2)) || curl -fs -o /dev/null -X PATCH -H "$auth" "http://127.0.0.1:$PORT/api/bench/tasks/$id/complete"
    done
    # Statistics, as autovacuum keeps them on a live database: without any,
    # PostgreSQL's estimates for a brand-new table can make it plan each
    # prepared list statement afresh instead of reusing a generic plan.
    [[ $DATABASE == postgres ]] && psql -q "$DATABASE_URL" -c "ANALYZE"
    for conns in $CONNECTIONS; do
        # Not measured: opens the connections and fills the database pool.
        wrk -t2 -c"$conns" -d2s -H "$auth" "http://127.0.0.1:$PORT/api/bench/tasks" >/dev/null
        for workload in $WORKLOADS; do
            case $workload in
                list) args=("http://127.0.0.1:$PORT/api/bench/tasks") ;;
                get) args=("http://127.0.0.1:$PORT/api/bench/tasks/$task") ;;
                create) args=(-s "$work/create.lua" "http://127.0.0.1:$PORT/api/bench/tasks") ;;
                spread) args=(-s "$work/spread.lua" "http://127.0.0.1:$PORT/") ;;
                *) echo "unknown workload $workload" >&2; exit 2 ;;
            esac
            name=$workload
            [[ $workload == spread ]] && name="create, 10 users"
            printf '%-12s %-28s %6s ' "$label" "$name" "$conns"
            wrk -t2 -c"$conns" -d"$DURATION" --latency -H "$auth" "${args[@]}" | summarise
        done
        forget_creates
    done
    echo "$label: peak memory $(grep VmHWM /proc/$server/status | awk '{print $2 / 1024}') MB (connections)"
    if ((BIG_TASKS > 0)); then
        big_token=$($bin token --sub big --ttl 2h)
        curl -fs -o /dev/null -H "Authorization: Bearer $big_token" "http://127.0.0.1:$PORT/api/big/tasks"
        python3 bench/insert_tasks.py "$DATABASE_URL" big "$BIG_TASKS"
        printf '%-12s %-28s %12s %12s %7s\n' "$label" "p50, 10 conns" "$TASKS tasks" "$BIG_TASKS tasks" ratio
        for query in "" sort=title "sort=priority&order=asc" sort=updated_at "sort=due_date&order=asc" \
            "sort=due_date&order=desc" \
            status=pending status=completed "status=pending&sort=title" q=4242 q=t5 q=generated; do
            small=$(p50 "$token" "http://127.0.0.1:$PORT/api/bench/tasks?$query")
            big=$(p50 "$big_token" "http://127.0.0.1:$PORT/api/big/tasks?$query")
            ratio=$(awk -v a="$(micros "$small")" -v b="$(micros "$big")" 'BEGIN {printf "%.1f", b / a}')
            printf '%-12s %-28s %12s %12s %6s×\n' "$label" "?${query:-(default)}" "$small" "$big" "$ratio"
        done
    fi
    echo "$label: peak memory $(grep VmHWM /proc/$server/status | awk '{print $2 / 1024}') MB (with the large user)"
    if [[ $DATABASE == postgres ]]; then
        for conns in $CONNECTIONS; do
            # pgbench opens one backend per client: at most what the server
            # allows, less a few for the service's own pool.
            clients=$((conns < pg_clients ? conns : pg_clients))
            for script in bench/pgbench/*.sql; do
                tps=$(pgbench -n -M prepared -c "$clients" -j 2 -T "${DURATION%s}" \
                    -D user=bench -D task="$task" -f "$script" "$DATABASE_URL" 2>/dev/null |
                    awk '/^tps/ {print $3}')
                printf '%-12s %-28s %6s %9.0f\n' pgbench "$(basename "$script" .sql)" "$clients" "${tps:-0}"
                [[ $script == */create.sql ]] && forget_creates
            done
        done
    fi
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=
done
