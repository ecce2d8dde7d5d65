#!/usr/bin/env bash
# Load benchmark of the release build: USERS users with TASKS tasks each, then
# CONNECTIONS concurrent keep-alive connections for DURATION with a mix of
# list (plain and filtered), stats and create requests (bench/mixed.lua).
# Prints wrk's latency percentiles and the server's peak resident memory.
#
#   bench/run.sh                         # SQLite in a temp dir
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/todo_bench bench/run.sh
#   AUTH=better-auth bench/run.sh        # real EdDSA tokens from Better Auth
#                                        # (tests/better-auth, `npm ci` there)
#
# wrk runs on the same machine as the server, so both share its cores.
set -euo pipefail
cd "$(dirname "$0")/.."

USERS=${USERS:-100}
TASKS=${TASKS:-50}
CONNECTIONS=${CONNECTIONS:-100}
DURATION=${DURATION:-20s}
PORT=${PORT:-18123}
AUTH=${AUTH:-hs256}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -q

work=$(mktemp -d)
export DATABASE_URL=${DATABASE_URL:-sqlite://$work/bench.db?mode=rwc}
export RUST_LOG=${RUST_LOG:-warn}
source bench/env.sh
bin=target/release/todo-api
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT

wait_for() {
    for _ in $(seq 1 100); do
        curl -fs "$1" >/dev/null && return
        sleep 0.2
    done
    echo "$1 did not answer" >&2
    exit 1
}

if [[ $AUTH == better-auth ]]; then
    auth_port=$((PORT + 1))
    (cd tests/better-auth && exec env PORT=$auth_port node server.mjs >"$work/better-auth.log" 2>&1) &
    pids+=($!)
    wait_for "http://127.0.0.1:$auth_port/api/auth/jwks"
    export BETTER_AUTH_URL=http://127.0.0.1:$auth_port
    unset BETTER_AUTH_SECRET
else
    export BETTER_AUTH_SECRET=$BENCH_SECRET
fi

if [[ $DATABASE_URL == postgres* ]]; then
    $bin migrate fresh >/dev/null
fi
PORT=$PORT $bin serve &
server=$!
pids+=($server)
wait_for "http://127.0.0.1:$PORT/health"

if [[ $AUTH == better-auth ]]; then
    python3 bench/better_auth_tokens.py "$BETTER_AUTH_URL" "$USERS" >"$work/tokens"
else
    for i in $(seq 1 "$USERS"); do
        echo "user$i $($bin token --sub "user$i" --ttl 2h)"
    done >"$work/tokens"
fi

python3 bench/seed.py "http://127.0.0.1:$PORT" "$work/tokens" "$TASKS"
echo "seeded $USERS users x $TASKS tasks ($AUTH tokens); $(nproc) cores; $CONNECTIONS connections for $DURATION"

TOKENS_FILE="$work/tokens" wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency \
    -s bench/mixed.lua "http://127.0.0.1:$PORT"

echo "server peak memory: $(grep VmHWM /proc/$server/status | awk '{print $2, $3}')"
