#!/usr/bin/env bash
# Property-based contract test of the HTTP API against the committed
# openapi/openapi.json, with Schemathesis.
#
#   bash tests/schemathesis/run.sh
#
# Environment:
#   TODO_API_BIN   server binary (default: target/debug/todo-api, relative to
#                  the repository root; build it first with `cargo build`)
#   ST_SEED        seed to replay a failing run (default: a random one, printed)
#   ST_MAX_EXAMPLES  test cases per operation and phase (default: 50)
#   ST_SPEC        OpenAPI document to test (default: openapi/openapi.json,
#                  the committed one, not the one the server serves)
#   ST_MAX_TIME    time budget in seconds for the whole run (default: 120);
#                  Schemathesis repeats fuzzing and stateful testing until it
#                  is spent. 0 = no budget: a single pass (about 10 s).
#
# The server runs on a free loopback port with a fresh SQLite database and is
# stopped on exit. Reports (JUnit, NDJSON) go to target/schemathesis-report/.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
here=tests/schemathesis
bin=${TODO_API_BIN:-target/debug/todo-api}
spec=${ST_SPEC:-openapi/openapi.json}
case $spec in /*) ;; *) spec=$root/$spec ;; esac
case $bin in /*) ;; *) bin=$root/$bin ;; esac
if [[ ! -x $bin ]]; then
    echo "error: server binary $bin not found; run 'cargo build' or set TODO_API_BIN" >&2
    exit 2
fi

# Virtualenv with the pinned Schemathesis, (re)installed when requirements change.
venv=$root/target/schemathesis-venv
if [[ ! -x $venv/bin/python ]]; then
    python3 -m venv "$venv"
fi
if ! cmp -s "$here/requirements.txt" "$venv/.requirements.txt"; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$venv/.requirements.txt"
fi

work=$(mktemp -d)
server_pid=
cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export DATABASE_URL="sqlite://$work/todo.db?mode=rwc"
export BETTER_AUTH_SECRET
BETTER_AUTH_SECRET=$("$venv/bin/python" -c 'import secrets; print(secrets.token_urlsafe(48))')
export HOST=127.0.0.1 PORT=$port RUST_LOG=warn
# Every response carries the rate limit headers the document declares, but
# the run (one user, thousands of requests) never reaches the limit.
export RATE_LIMIT=1000000/min

"$bin" serve >"$work/server.log" 2>&1 &
server_pid=$!
base=http://127.0.0.1:$port
for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "$base/health" 2>/dev/null; then break; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "error: server exited during startup:" >&2
        cat "$work/server.log" >&2
        exit 1
    fi
    sleep 0.1
done
curl -fsS -o /dev/null "$base/health"

export TODO_API_SUB=schemathesis-user
TODO_API_TOKEN=$("$bin" token --sub "$TODO_API_SUB" --ttl 1h)
export TODO_API_TOKEN

seed=${ST_SEED:-$("$venv/bin/python" -c 'import random; print(random.randrange(2**31))')}
max_examples=${ST_MAX_EXAMPLES:-50}
max_time=${ST_MAX_TIME:-120}
budget=()
if [[ $max_time != 0 ]]; then budget=(--max-time "$max_time"); fi
echo "schemathesis: server $base, seed $seed (replay: ST_SEED=$seed bash $here/run.sh)"

reports=$root/target/schemathesis-report
rm -rf "$reports"
mkdir -p "$reports"
status=0
# Run from a scratch directory: Schemathesis writes state into its working dir.
(
    cd "$work"
    SCHEMATHESIS_HOOKS=$root/$here/hooks.py "$venv/bin/schemathesis" --config-file "$root/$here/schemathesis.toml" \
        run "$spec" \
        --url "$base" \
        --checks all \
        --mode all \
        --phases examples,coverage,fuzzing,stateful \
        --max-examples "$max_examples" \
        "${budget[@]}" \
        --seed "$seed" \
        --continue-on-failure \
        --report junit,ndjson --report-dir "$reports"
) || status=$?

# The server logs every error status its operation does not declare
# (api::problems::check_declared_status): none may come from these requests.
if grep -q "does not declare" "$work/server.log"; then
    echo "schemathesis: the server answered statuses its document does not declare:" >&2
    grep "does not declare" "$work/server.log" | head -n 5 >&2
    status=1
fi

if [[ $status != 0 ]]; then
    echo "schemathesis: FAILED (exit $status); replay with ST_SEED=$seed bash $here/run.sh" >&2
    if [[ -s $work/server.log ]]; then
        echo "--- server log (last 50 lines) ---" >&2
        tail -n 50 "$work/server.log" >&2
    fi
fi
exit "$status"
