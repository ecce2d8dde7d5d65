#!/usr/bin/env bash
# Memory held by 1 000 slow or idle connections of each kind, each kind
# against a fresh server, and whether the server's timeouts close them
# (bench/stalled.py). Short timeouts keep the run brief.
#
#   bench/stalled.sh                 # idle keepalive partial bighead body
#   bench/stalled.sh partial         # one kind
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/env.sh
cargo build --release -q
export PORT=${PORT:-18124}
ulimit -n 4096
kinds=${*:-idle keepalive partial bighead body}
for kind in $kinds; do
    work=$(mktemp -d)
    DATABASE_URL="sqlite://$work/bench.db?mode=rwc" BETTER_AUTH_SECRET=$BENCH_SECRET \
        HEADER_TIMEOUT=5s KEEP_ALIVE_TIMEOUT=5s BODY_TIMEOUT=5s RUST_LOG=error \
        setsid target/release/todo-api serve >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
    SERVER_PID=$pid WAIT=7 python3 bench/stalled.py "$kind"
    kill "$pid"
    rm -rf "$work"
done
