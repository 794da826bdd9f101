#!/usr/bin/env python3
"""What one inbox append costs in SQLite once inboxes are full, with the statements of the
store's writer thread: the trim by `seq` (migrations 0004 + 0005) against the trim that walked
the user's newest rows (0004 alone, `LIMIT 1 OFFSET max_per_user`), in the same run.

    python3 bench/inbox_trim.py [--users 1000] [--per-user 1000] [--appends 5000]

Each side gets its own file, filled with `--users` users of `--per-user` rows each (the bound,
as after days at one notification a minute), then times `--appends` appends to those users in
one transaction, each followed by its trim, and as many to new users. The times include
Python's own cost per statement (the same on both sides).
"""

import argparse
import os
import sqlite3
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MIGRATIONS = os.path.join(HERE, "..", "migrations", "sqlite")
PAYLOAD = '{"id":"x","data":{"k":"' + "v" * 200 + '"}}'

WALK = {
    "insert": "INSERT INTO inbox (user_id, id, payload) VALUES (?1, ?2, ?3) "
    "ON CONFLICT (user_id, id) DO NOTHING",
    "trim": "DELETE FROM inbox WHERE user_id = ?1 AND id <= "
    "(SELECT id FROM inbox WHERE user_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
}
# The writer thread's: each insert answers its seq, and only a user past the bound is trimmed.
SEQ = {
    "insert": "INSERT INTO inbox (user_id, id, payload, seq) SELECT ?1, ?2, ?3, "
    "COALESCE((SELECT MAX(seq) FROM inbox WHERE user_id = ?1), 0) + 1 "
    "WHERE true ON CONFLICT (user_id, id) DO NOTHING RETURNING seq",
    "trim": "DELETE FROM inbox WHERE user_id = ?1 AND seq <= ?2",
}


def migrate(db, names):
    for name in names:
        with open(os.path.join(MIGRATIONS, name)) as f:
            db.executescript(f.read())


def filled(path, migrations, users, per_user, with_seq):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = wal")
    db.execute("PRAGMA synchronous = normal")
    migrate(db, migrations)
    db.execute("BEGIN")
    for u in range(users):
        for i in range(per_user):
            row = (f"user-{u}", f"0-{i:09d}", PAYLOAD)
            if with_seq:
                db.execute("INSERT INTO inbox VALUES (?, ?, ?, ?)", row + (i + 1,))
            else:
                db.execute("INSERT INTO inbox VALUES (?, ?, ?)", row)
    db.execute("COMMIT")
    return db


def appends(db, sql, users, n, per_user, fresh):
    start = time.perf_counter()
    db.execute("BEGIN IMMEDIATE")
    for k in range(n):
        user = f"new-{k}" if fresh else f"user-{k % users}"
        inserted = db.execute(sql["insert"], (user, f"1-{k:09d}", PAYLOAD)).fetchone()
        if sql is WALK:
            db.execute(sql["trim"], (user, per_user))
        elif inserted and inserted[0] > per_user:
            db.execute(sql["trim"], (user, inserted[0] - per_user))
    db.execute("COMMIT")
    return (time.perf_counter() - start) / n * 1e6


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--per-user", type=int, default=1000)
    p.add_argument("--appends", type=int, default=5000)
    a = p.parse_args()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, sql, migrations, with_seq in [
            ("walk", WALK, ["0004_inbox.sql"], False),
            ("seq", SEQ, ["0004_inbox.sql", "0005_inbox_seq.sql"], True),
        ]:
            db = filled(os.path.join(tmp, f"{name}.db"), migrations, a.users, a.per_user, with_seq)
            full = appends(db, sql, a.users, a.appends, a.per_user, fresh=False)
            fresh = appends(db, sql, a.users, a.appends, a.per_user, fresh=True)
            (kept,) = db.execute("SELECT COUNT(*) FROM inbox WHERE user_id = 'user-0'").fetchone()
            assert kept == a.per_user, f"{name}: user-0 keeps {kept}, not {a.per_user}"
            out[name] = (full, fresh)
            db.close()
    print(f"{a.users} users x {a.per_user} rows, {a.appends} appends, SQLite {sqlite3.sqlite_version}")
    print("trim          | us per append, full inbox | us per append, new user")
    for name, (full, fresh) in out.items():
        print(f"{name:13} | {full:25.1f} | {fresh:23.1f}")
    print(f"walk / seq    | {out['walk'][0] / out['seq'][0]:25.2f} | {out['walk'][1] / out['seq'][1]:23.2f}")


if __name__ == "__main__":
    main()
