#!/usr/bin/env bash
# Memory held by 1 000 slow or idle connections, and whether the server's
# timeouts close them (bench/stalled.py). Short timeouts keep the run brief.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
work=$(mktemp -d)
export PORT=${PORT:-18124}
ulimit -n 4096
DATABASE_URL="sqlite://$work/bench.db?mode=rwc" BETTER_AUTH_SECRET=bench-secret-0123456789abcdef0123456789 \
    HEADER_TIMEOUT=5s KEEP_ALIVE_TIMEOUT=5s BODY_TIMEOUT=5s RUST_LOG=warn \
    target/release/todo-api serve &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
SERVER_PID=$pid WAIT=7 python3 bench/stalled.py "$@"
