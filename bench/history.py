#!/usr/bin/env python3
"""Fills a stopped master's SQLite store with a history of finished builds, for workload 5 of bench/run.

    bench/history.py kiln|buildbot STATE.SQLITE BUILDS [--builder NAME] [--zstd-chunk FILE]

Adds BUILDS builds of builder NAME (default `history`; it must be in the store: start the master once with it
configured), each with what a real finished build has in that system's schema: a buildset and a build request
(complete, success), the build (success, on the store's first worker and master), one step `shell` with one
stdio log of 20 lines, stored as one log chunk. Ids and build numbers continue after the rows already there, and
timestamps are one second apart, ending now. Everything goes in one transaction of `INSERT ... SELECT` over a
table of numbers, so a million builds take tens of seconds.

Log chunks: Kiln stores a finished log's chunks zstd-compressed (`compressed = 1`); Python has no zstd before
3.14, so kiln-bench passes the compressed chunk in `--zstd-chunk` (without it the chunk is stored raw,
`compressed = 0`, which Kiln also reads). Buildbot's chunk is stored raw (`compressed = 0`), the cheapest form for
it to read.

The schemas are those of Kiln's migrations (crates/store/migrations/sqlite/) and of Buildbot 4.3.0 as
`buildbot create-master` makes it (builds.locks_duration_s, steps.urls_json, the table `logchunks`).
"""

import argparse
import sqlite3
import sys
import time

LINES = 20
TEXT = "".join(f"oline {k} of a build log from bench/history.py, long enough to look like output\n" for k in range(LINES))


def next_id(db, table, column="id"):
    return db.execute(f"SELECT COALESCE(MAX({column}), 0) FROM {table}").fetchone()[0]


def one(db, sql, params, what):
    row = db.execute(sql, params).fetchone()
    if row is None:
        sys.exit(f"history.py: no {what} in the store (start the master once with it configured)")
    return row[0]


def fill(db, system, builds, builder, chunk, compressed):
    builderid = one(db, "SELECT id FROM builders WHERE name = ?", (builder,), f"builder {builder!r}")
    masterid = one(db, "SELECT id FROM masters ORDER BY id LIMIT 1", (), "master")
    workerid = db.execute("SELECT id FROM workers ORDER BY id LIMIT 1").fetchone()
    workerid = workerid[0] if workerid else None
    chunks = "log_chunks" if system == "kiln" else "logchunks"
    p = {
        "n": builds,
        "bs": next_id(db, "buildsets"),
        "br": next_id(db, "buildrequests"),
        "b": next_id(db, "builds"),
        "s": next_id(db, "steps"),
        "l": next_id(db, "logs"),
        "number": db.execute("SELECT COALESCE(MAX(number), 0) FROM builds WHERE builderid = ?", (builderid,)).fetchone()[0],
        "builder": builderid,
        "master": masterid,
        "worker": workerid,
        "t": int(time.time()) - builds,
        "lines": LINES,
        "chunk": chunk,
        "compressed": compressed,
    }
    db.execute("CREATE TEMP TABLE seq (i INTEGER PRIMARY KEY)")
    db.execute("INSERT INTO seq WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :n) SELECT i FROM n", p)
    if system == "kiln":
        statements = [
            "INSERT INTO buildsets (id, reason, submitted_at, complete, complete_at, results, scheduler) "
            "SELECT :bs + i, 'history', :t + i, 1, :t + i + 1, 0, 'force-history' FROM seq",
            "INSERT INTO buildrequests (id, buildsetid, builderid, priority, submitted_at, complete, results, complete_at) "
            "SELECT :br + i, :bs + i, :builder, 0, :t + i, 1, 0, :t + i + 1 FROM seq",
            "INSERT INTO builds (id, number, builderid, buildrequestid, workerid, masterid, started_at, complete_at, "
            "state_string, results) "
            "SELECT :b + i, :number + i, :builder, :br + i, :worker, :master, :t + i, :t + i + 1, 'build successful', 0 "
            "FROM seq",
            "INSERT INTO steps (id, number, name, buildid, started_at, complete_at, state_string, results) "
            "SELECT :s + i, 0, 'shell', :b + i, :t + i, :t + i + 1, 'shell', 0 FROM seq",
            "INSERT INTO logs (id, name, slug, stepid, complete, num_lines, type) "
            "SELECT :l + i, 'stdio', 'stdio', :s + i, 1, :lines, 's' FROM seq",
            f"INSERT INTO {chunks} (logid, first_line, last_line, compressed, content) "
            "SELECT :l + i, 0, :lines - 1, :compressed, :chunk FROM seq",
        ]
    else:
        statements = [
            "INSERT INTO buildsets (id, reason, submitted_at, complete, complete_at, results) "
            "SELECT :bs + i, 'history', :t + i, 1, :t + i + 1, 0 FROM seq",
            "INSERT INTO buildrequests (id, buildsetid, builderid, priority, complete, results, submitted_at, "
            "complete_at, waited_for) "
            "SELECT :br + i, :bs + i, :builder, 0, 1, 0, :t + i, :t + i + 1, 0 FROM seq",
            "INSERT INTO builds (id, number, builderid, buildrequestid, workerid, masterid, started_at, complete_at, "
            "locks_duration_s, state_string, results) "
            "SELECT :b + i, :number + i, :builder, :br + i, :worker, :master, :t + i, :t + i + 1, 0, "
            "'build successful', 0 FROM seq",
            "INSERT INTO steps (id, number, name, buildid, started_at, locks_acquired_at, complete_at, state_string, "
            "results, urls_json, hidden) "
            "SELECT :s + i, 0, 'shell', :b + i, :t + i, :t + i, :t + i + 1, 'shell', 0, '[]', 0 FROM seq",
            "INSERT INTO logs (id, name, slug, stepid, complete, num_lines, type) "
            "SELECT :l + i, 'stdio', 'stdio', :s + i, 1, :lines, 's' FROM seq",
            f"INSERT INTO {chunks} (logid, first_line, last_line, content, compressed) "
            "SELECT :l + i, 0, :lines - 1, :chunk, :compressed FROM seq",
        ]
    for sql in statements:
        db.execute(sql, p)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("system", choices=["kiln", "buildbot"])
    parser.add_argument("db")
    parser.add_argument("builds", type=int)
    parser.add_argument("--builder", default="history")
    parser.add_argument("--zstd-chunk", help="Kiln: the log chunk, zstd-compressed (else stored raw)")
    args = parser.parse_args()
    if args.builds < 1:
        sys.exit("history.py: BUILDS must be at least 1")
    if args.zstd_chunk and args.system == "kiln":
        with open(args.zstd_chunk, "rb") as f:
            chunk, compressed = f.read(), 1
    else:
        chunk, compressed = TEXT.encode(), 0
    started = time.monotonic()
    db = sqlite3.connect(args.db, isolation_level=None)
    db.execute("PRAGMA busy_timeout = 30000")
    db.execute("BEGIN IMMEDIATE")
    try:
        fill(db, args.system, args.builds, args.builder, chunk, compressed)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    print(f"history.py: {args.builds} builds added to {args.db} in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
