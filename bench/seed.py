"""Seeds the benchmark database through the API: TASKS tasks per user."""

import json
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

base, tokens_file, tasks = sys.argv[1], sys.argv[2], int(sys.argv[3])
users = [line.split() for line in open(tokens_file)]
priorities = ["low", "medium", "high"]
tags = [["work"], ["home"], ["work", "q4"], []]


def seed(user):
    user_id, token = user
    for n in range(tasks):
        body = {
            "title": f"report {n} for {user_id}",
            "description": "seeded by bench/seed.py",
            "priority": priorities[n % 3],
            "tags": tags[n % 4],
        }
        if n % 2:
            body["due_date"] = f"2026-12-{1 + n % 28:02d}T12:00:00Z"
        request = urllib.request.Request(
            f"{base}/api/{user_id}/tasks",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as response:
            assert response.status == 201, response.status


with ThreadPoolExecutor(max_workers=8) as pool:
    list(pool.map(seed, users))
