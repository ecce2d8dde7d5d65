#!/usr/bin/env bash
# What safe writes cost: POST without and with an `Idempotency-Key` (a new
# one per request, so each is remembered), and PATCH without and with
# `If-Match` (the version each connection last saw, so every write
# succeeds), side by side on one server, on SQLite or PostgreSQL. Each wrk
# thread has one connection and one task of its own and follows its `ETag`.
#
#   bench/safe_writes.sh                    # this build, SQLite
#   DATABASE=postgres bench/safe_writes.sh
#   CONNECTIONS=10 DURATION=10s ROUNDS=3 BINARY=target/release/todo-api bench/safe_writes.sh
#
# wrk runs on the same machine as the server and shares its cores.
set -euo pipefail
cd "$(dirname "$0")/.."

DATABASE=${DATABASE:-sqlite}
CONNECTIONS=${CONNECTIONS:-10}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-18141}
PG=${PG:-postgres://postgres@127.0.0.1:5432}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
source bench/env.sh
release_binary
scratch_space
export RUST_LOG=error

if [[ $DATABASE == postgres ]]; then
    psql -q "$PG/postgres" -c 'DROP DATABASE IF EXISTS todo_bench_safe_writes' \
        -c 'CREATE DATABASE todo_bench_safe_writes'
    export DATABASE_URL=$PG/todo_bench_safe_writes
else
    export DATABASE_URL="sqlite://$work/bench.db?mode=rwc"
fi
PORT=$PORT $BINARY serve &
server=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
token=$($BINARY token --sub bench --ttl 2h)
auth="Authorization: Bearer $token"
ids=()
for _ in $(seq 1 "$CONNECTIONS"); do
    ids+=("$(curl -fs -H "$auth" -H 'Content-Type: application/json' \
        -d '{"title":"bench patch","tags":["bench"]}' "http://127.0.0.1:$PORT/api/bench/tasks" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')")
done

cat >"$work/writes.lua" <<'LUA'
-- One task per thread (one connection each). WRITE=patch: with IF_MATCH=1
-- each PATCH names the version the previous answer's ETag gave.
-- WRITE=create: with IDEMPOTENCY_KEY=1 each POST has a key of its own.
local ids = {}
for id in string.gmatch(os.getenv("TASK_IDS"), "%d+") do ids[#ids + 1] = id end
local next_thread = 0
function setup(thread)
  next_thread = next_thread + 1
  thread:set("task_id", ids[next_thread])
end

local create = os.getenv("WRITE") == "create"
local conditional = os.getenv("IF_MATCH") == "1"
local idempotent = os.getenv("IDEMPOTENCY_KEY") == "1"
local round = os.getenv("ROUND")
local etag = nil
local count = 0
function request()
  count = count + 1
  local headers = {
    ["Authorization"] = "Bearer " .. os.getenv("TOKEN"),
    ["Content-Type"] = "application/json",
  }
  if create then
    if idempotent then
      headers["Idempotency-Key"] = string.format("bench-%s-%s-%d", round, task_id, count)
    end
    local body = '{"title":"bench create","priority":"high","tags":["bench"]}'
    return wrk.format("POST", "/api/bench/tasks", headers, body)
  end
  if conditional and etag then headers["If-Match"] = etag end
  local body = string.format('{"title":"bench patch %d","priority":"low"}', count)
  return wrk.format("PATCH", "/api/bench/tasks/" .. task_id, headers, body)
end

function response(status, headers, body)
  etag = headers["ETag"] or headers["etag"]
end
LUA

summarise() {
    awk '/Requests\/sec/ {rps=$2}
         /^ +50%/ {p50=$2}
         /^ +99%/ {p99=$2}
         /Socket errors/ {err=$4+$6+$8+$10; gsub(",","",err)}
         /Non-2xx/ {non2xx=$5}
         END {printf "%9.0f %9s %9s %6d\n", rps, p50, p99, err+non2xx}'
}

export TOKEN=$token TASK_IDS="${ids[*]}"
printf '%-8s %-26s %9s %9s %9s %6s\n' round workload rps p50 p99 errors
# Not measured: warms the connections and the pool.
WRITE=patch wrk -t"$CONNECTIONS" -c"$CONNECTIONS" -d2s -s "$work/writes.lua" "http://127.0.0.1:$PORT" >/dev/null
for round in $(seq 1 "$ROUNDS"); do
    for workload in create create+key patch patch+if-match; do
        case $workload in
            create) env=(WRITE=create IDEMPOTENCY_KEY=0) label="POST" ;;
            create+key) env=(WRITE=create IDEMPOTENCY_KEY=1) label="POST + Idempotency-Key" ;;
            patch) env=(WRITE=patch IF_MATCH=0) label="PATCH" ;;
            patch+if-match) env=(WRITE=patch IF_MATCH=1) label="PATCH + If-Match" ;;
        esac
        printf '%-8s %-26s ' "$round" "$label"
        env "${env[@]}" ROUND="$round" wrk -t"$CONNECTIONS" -c"$CONNECTIONS" -d"$DURATION" --latency \
            -s "$work/writes.lua" "http://127.0.0.1:$PORT" | summarise
    done
done
