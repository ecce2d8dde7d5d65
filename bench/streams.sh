#!/usr/bin/env bash
# Live updates at scale: STREAMS (1 000) event streams for USERS (100) users
# open on one server, while creates arrive through the API at RATE per
# second; prints how long each change took from its request being sent to
# its event reaching every stream of its user (p50/p95/p99, and any missing),
# and the server's memory idle and with the streams open.
#
#   bench/streams.sh                        # this build, SQLite
#   DATABASE=postgres bench/streams.sh
#   STREAMS=1000 USERS=100 RATE=200 DURATION=10s BINARY=target/release/todo-api bench/streams.sh
#
# The client (Python asyncio) runs on the same machine as the server.
set -euo pipefail
cd "$(dirname "$0")/.."

DATABASE=${DATABASE:-sqlite}
STREAMS=${STREAMS:-1000}
USERS=${USERS:-100}
RATE=${RATE:-200}
# (Not SECONDS: bash keeps its own, the seconds since the shell started.)
DURATION=${DURATION:-10s}
DURATION=${DURATION%s}
PORT=${PORT:-18143}
PG=${PG:-postgres://postgres@127.0.0.1:5432}

source bench/env.sh
release_binary
scratch_space
export RUST_LOG=${RUST_LOG:-warn}
export MAX_STREAMS_PER_USER=$(((STREAMS + USERS - 1) / USERS))
ulimit -n 16384

if [[ $DATABASE == postgres ]]; then
    psql -q "$PG/postgres" -c 'DROP DATABASE IF EXISTS todo_bench_streams' \
        -c 'CREATE DATABASE todo_bench_streams'
    export DATABASE_URL=$PG/todo_bench_streams
else
    export DATABASE_URL="sqlite://$work/bench.db?mode=rwc"
fi
PORT=$PORT $BINARY serve &
server=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
python3 bench/streams.py "http://127.0.0.1:$PORT" "$BINARY" "$server" "$USERS" "$STREAMS" "$RATE" "$DURATION"
