#!/usr/bin/env bash
# Load benchmark of the release build: USERS users with TASKS tasks each, then
# CONNECTIONS concurrent keep-alive connections for DURATION with a mix of
# list (plain and filtered), stats and create requests (bench/mixed.lua).
# Prints wrk's latency percentiles and the server's peak resident memory.
#
#   bench/run.sh                         # SQLite in a temp dir
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/todo_bench bench/run.sh
#
# wrk runs on the same machine as the server, so both share its cores.
set -euo pipefail
cd "$(dirname "$0")/.."

USERS=${USERS:-100}
TASKS=${TASKS:-50}
CONNECTIONS=${CONNECTIONS:-100}
DURATION=${DURATION:-20s}
PORT=${PORT:-18123}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -q

work=$(mktemp -d)
export BETTER_AUTH_SECRET=bench-secret-0123456789abcdef0123456789
export DATABASE_URL=${DATABASE_URL:-sqlite://$work/bench.db?mode=rwc}
export RUST_LOG=${RUST_LOG:-warn}
bin=target/release/todo-api

if [[ $DATABASE_URL == postgres* ]]; then
    $bin migrate fresh >/dev/null
fi
PORT=$PORT $bin serve &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 50); do
    curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break
    sleep 0.2
done

for i in $(seq 1 "$USERS"); do
    echo "user$i $($bin token --sub "user$i" --ttl 2h)"
done >"$work/tokens"

python3 bench/seed.py "http://127.0.0.1:$PORT" "$work/tokens" "$TASKS"
echo "seeded $USERS users x $TASKS tasks; $(nproc) cores; $CONNECTIONS connections for $DURATION"

TOKENS_FILE="$work/tokens" wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency \
    -s bench/mixed.lua "http://127.0.0.1:$PORT"

echo "server peak memory: $(grep VmHWM /proc/$server/status | awk '{print $2, $3}')"
