#!/usr/bin/env python3
"""Inserts N tasks for one user straight into the database, around the API,
as an import would: bench/compare.sh uses it for the large-user comparison.
The user must exist (any request with their token creates the row).

    bench/insert_tasks.py DATABASE_URL USER_ID N

Half the tasks are completed, priorities rotate, every other one is due.
"""
import subprocess
import sys
from datetime import datetime, timedelta, timezone

url, user, count = sys.argv[1], sys.argv[2], int(sys.argv[3])

if url.startswith("postgres"):
    sql = f"""
    INSERT INTO tasks (user_id, title, title_search, description, description_search,
                       completed, priority, due_date, completed_at, created_at, updated_at)
    SELECT '{user}', 'task ' || n, 'task ' || n, 'generated task', 'generated task',
           n % 2 = 0, n % 3,
           CASE WHEN n % 2 = 1 THEN now() + n * interval '1 minute' END,
           CASE WHEN n % 2 = 0 THEN now() END,
           now() - n * interval '1 second', now() - n * interval '1 second'
      FROM generate_series(1, {count}) AS n;
    ANALYZE tasks;
    """
    subprocess.run(["psql", "-q", url, "-c", sql], check=True)
else:
    import sqlite3

    path = url.removeprefix("sqlite://").split("?")[0]
    now = datetime.now(timezone.utc)

    def stamp(moment):
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")

    rows = (
        (
            user, f"task {n}", f"task {n}", "generated task", "generated task",
            int(n % 2 == 0), n % 3,
            stamp(now + timedelta(minutes=n)) if n % 2 else None,
            stamp(now) if n % 2 == 0 else None,
            stamp(now - timedelta(seconds=n)), stamp(now - timedelta(seconds=n)),
        )
        for n in range(1, count + 1)
    )
    db = sqlite3.connect(path, timeout=30)
    db.executemany(
        "INSERT INTO tasks (user_id, title, title_search, description, description_search,"
        " completed, priority, due_date, completed_at, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    db.execute("ANALYZE")
    db.commit()
