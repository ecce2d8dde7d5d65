#!/usr/bin/env bash
# Instructions the service executes per request, counted by callgrind: unlike
# throughput on a shared 2-core machine, the count repeats to within a fraction
# of a percent, so it resolves the cost of a few hundred nanoseconds of work
# per request (a middleware, a metric). SQLite, one keep-alive connection.
#
# The server runs twice under callgrind, answering FEW and then MANY rounds
# of REQUESTS (some of: list get 403; a list of a user's 20 tasks, a get of
# one, a 403 for another user's path); the difference divided by MANY - FEW
# is the cost of one round, without startup, migrations and shutdown.
#
#   bench/instructions.sh
#   BINARY=/tmp/old/todo-api REQUESTS=list bench/instructions.sh
#   RATE_LIMIT=600000/min METRICS_ADDR=127.0.0.1:19190 bench/instructions.sh
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

REQUESTS=${REQUESTS:-list get 403}
FEW=${FEW:-200}
MANY=${MANY:-1200}
PORT=${PORT:-18143}

command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
source bench/env.sh
release_binary
scratch_space
export RUST_LOG=error

# "requests" -> the instructions the server executed, start to exit.
instructions() {
    local count=$1
    rm -f "$work"/todo.db*
    DATABASE_URL="sqlite://$work/todo.db?mode=rwc" PORT=$PORT \
        valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
        "$BINARY" serve 2>"$work/valgrind.log" &
    server=$!
    for _ in $(seq 1 300); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
    python3 - "$PORT" "$($BINARY token --sub bench --ttl 2h)" "$count" "$REQUESTS" <<'EOF'
import http.client, json, sys
port, token, count, kinds = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split()
conn = http.client.HTTPConnection("127.0.0.1", int(port))
auth = {"Authorization": f"Bearer {token}"}
def call(method, path, body=None, expect=200):
    headers = dict(auth, **({"Content-Type": "application/json"} if body else {}))
    conn.request(method, path, body=json.dumps(body) if body else None, headers=headers)
    response = conn.getresponse()
    response.read()
    assert response.status == expect, (path, response.status)
for n in range(20):
    call("POST", "/api/bench/tasks", {"title": f"task {n}", "tags": ["work"]}, 201)
requests = {
    "list": ("/api/bench/tasks", 200),
    "get": ("/api/bench/tasks/1", 200),
    "403": ("/api/someone-else/tasks", 403),
}
for _ in range(count):
    for kind in kinds:
        path, status = requests[kind]
        call("GET", path, expect=status)
EOF
    kill -INT "$server"
    wait "$server" || true
    server=
    awk '/^summary:/ {print $2}' "$work/callgrind.out"
}

few=$(instructions "$FEW")
many=$(instructions "$MANY")
awk -v few="$few" -v many="$many" -v n=$((MANY - FEW)) -v requests="$REQUESTS" 'BEGIN {
    printf "instructions per round (%s): %.0f\n", requests, (many - few) / n }'
