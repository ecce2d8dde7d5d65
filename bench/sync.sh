#!/usr/bin/env bash
# What syncing costs, on SQLite or PostgreSQL:
#
# - Incremental sync: GET /changes from a cursor with 10 changes after it,
#   for a user with 20 tasks and for one with BIG_TASKS (100 000), under wrk
#   at 10 connections: requests/s, p50 and p99 of each, and the ratio of
#   the large user's p50 to the small one's (target: at most 1.5).
# - Full sync: a client paging through 1 000 tasks from no cursor, at the
#   default page size (100: ten requests) and at the largest (1 000: one),
#   one connection, ROUNDS times: the median and slowest wall time
#   (target: under a second).
#
#   bench/sync.sh                          # this build, SQLite
#   DATABASE=postgres bench/sync.sh
#   BINARY=/tmp/old/todo-api DURATION=5s BIG_TASKS=100000 bench/sync.sh
#
# wrk and the client run on the same machine as the server and share its cores.
set -euo pipefail
cd "$(dirname "$0")/.."

DATABASE=${DATABASE:-sqlite}
DURATION=${DURATION:-10s}
BIG_TASKS=${BIG_TASKS:-100000}
ROUNDS=${ROUNDS:-20}
PORT=${PORT:-18142}
PG=${PG:-postgres://postgres@127.0.0.1:5432}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
source bench/env.sh
release_binary
scratch_space
export RUST_LOG=error

if [[ $DATABASE == postgres ]]; then
    psql -q "$PG/postgres" -c 'DROP DATABASE IF EXISTS todo_bench_sync' \
        -c 'CREATE DATABASE todo_bench_sync'
    export DATABASE_URL=$PG/todo_bench_sync
else
    export DATABASE_URL="sqlite://$work/bench.db?mode=rwc"
fi
PORT=$PORT $BINARY serve &
server=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
base=http://127.0.0.1:$PORT/api

# Users, their tasks (the small one's and the full-sync one's through the
# API, the large one's straight into the database), and the cursor each
# incremental sync starts from: the end of the feed before 10 changes.
python3 - "$base" "$BINARY" "$DATABASE_URL" "$BIG_TASKS" >"$work/setup" <<'EOF'
import http.client, json, subprocess, sys, urllib.parse

base, binary, database_url, big_tasks = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
url = urllib.parse.urlsplit(base)
connection = http.client.HTTPConnection(url.hostname, url.port)

def token(user):
    return subprocess.run([binary, "token", "--sub", user, "--ttl", "2h"],
                          check=True, capture_output=True, text=True).stdout.strip()

def call(method, user, path, body=None):
    global connection
    headers = {"Authorization": f"Bearer {tokens[user]}", "Content-Type": "application/json"}
    try:
        connection.request(method, f"{url.path}/{user}{path}", json.dumps(body) if body else None, headers)
        response = connection.getresponse()
    except (http.client.RemoteDisconnected, ConnectionError):
        # Closed while idle (KEEP_ALIVE_TIMEOUT) during the bulk insert.
        connection = http.client.HTTPConnection(url.hostname, url.port)
        connection.request(method, f"{url.path}/{user}{path}", json.dumps(body) if body else None, headers)
        response = connection.getresponse()
    payload = response.read()
    assert response.status < 300, (response.status, payload)
    return json.loads(payload) if payload else None

def end_of_feed(user):
    page = call("GET", user, "/changes?limit=1000")
    while page["has_more"]:
        page = call("GET", user, f"/changes?limit=1000&since={page['cursor']}")
    return page["cursor"]

tokens = {user: token(user) for user in ("small", "big", "thousand")}
for n in range(20):
    call("POST", "small", "/tasks", {"title": f"small {n}", "tags": ["bench"]})
for n in range(1000):
    call("POST", "thousand", "/tasks", {"title": f"task {n}", "description": "to sync", "tags": ["bench", f"t{n % 7}"]})
call("GET", "big", "/tasks")
subprocess.run(["python3", "bench/insert_tasks.py", database_url, "big", str(big_tasks)], check=True)
for user in ("small", "big"):
    cursor = end_of_feed(user)
    ids = [task["id"] for task in call("GET", user, "/tasks?limit=10")["items"]]
    for id in ids:
        call("PATCH", user, f"/tasks/{id}", {"title": "changed"})
    check = call("GET", user, f"/changes?since={cursor}")
    assert len(check["changes"]) == 10 and not check["has_more"], check
    print(user, tokens[user], cursor)
print("thousand", tokens["thousand"], "-")
EOF

printf '%-34s %9s %9s %9s\n' "incremental sync, 10 changes" rps p50 p99
summarise() {
    awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
         /Non-2xx/ {bad=$5} END {printf "%9.0f %9s %9s%s\n", rps, p50, p99, bad ? "  NON-2XX " bad : ""}'
}
micros() {
    awk -v t="$1" 'BEGIN { if (t ~ /us$/) m = 1; else if (t ~ /ms$/) m = 1000; else m = 1000000
                           sub(/[a-z]+$/, "", t); print t * m }'
}
declare -A p50s
while read -r user token cursor; do
    [[ $user == thousand ]] && continue
    url="$base/$user/changes?since=$cursor"
    wrk -t2 -c10 -d2s -H "Authorization: Bearer $token" "$url" >/dev/null
    line=$(wrk -t2 -c10 -d"$DURATION" --latency -H "Authorization: Bearer $token" "$url" | summarise)
    label="$user user"
    [[ $user == big ]] && label="big user ($BIG_TASKS tasks)"
    [[ $user == small ]] && label="small user (20 tasks)"
    printf '%-34s %s\n' "$label" "$line"
    p50s[$user]=$(micros "$(awk '{print $2}' <<<"$line")")
done <"$work/setup"
awk -v b="${p50s[big]}" -v s="${p50s[small]}" 'BEGIN {printf "%-34s %9.2f  (target <= 1.5)\n", "p50 ratio big / small", b / s}'

read -r _ thousand_token _ < <(grep '^thousand ' "$work/setup")
python3 - "$base" "$thousand_token" "$ROUNDS" <<'EOF'
import http.client, json, statistics, sys, time, urllib.parse

base, token, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
url = urllib.parse.urlsplit(base)
headers = {"Authorization": f"Bearer {token}"}

def full_sync(connection, limit):
    tasks, cursor, requests = {}, None, 0
    while True:
        query = f"limit={limit}" + (f"&since={cursor}" if cursor else "")
        connection.request("GET", f"{url.path}/thousand/changes?{query}", headers=headers)
        response = connection.getresponse()
        page = json.loads(response.read())
        assert response.status == 200, page
        requests += 1
        for change in page["changes"]:
            tasks[change["task_id"]] = change["task"]
        cursor = page["cursor"]
        if not page["has_more"]:
            return tasks, requests

print(f"{'full sync, 1 000 tasks':34} {'median':>9} {'slowest':>9} {'requests':>9}")
for limit in (100, 1000):
    connection = http.client.HTTPConnection(url.hostname, url.port)
    full_sync(connection, limit)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        tasks, requests = full_sync(connection, limit)
        times.append(time.perf_counter() - start)
        assert len(tasks) == 1000, len(tasks)
    print(f"{'page size ' + str(limit):34} {statistics.median(times) * 1000:7.1f}ms "
          f"{max(times) * 1000:7.1f}ms {requests:9}")
EOF
echo "peak memory $(grep VmHWM /proc/$server/status | awk '{print $2 / 1024}') MB"
