"""The baseline a scan must beat: a short script with the public `testrail-api` client that
reads every user, group and role of a TestRail instance (paging 250 at a time) and inserts
them into SQLite. `scripts/bench.sh` runs it against the same simulator as the benchmark.

Usage: python_baseline.py BASE_URL EMAIL KEY DB_PATH
"""
import json
import resource
import sqlite3
import sys
import time

from testrail_api import TestRailAPI


def walk(call, key):
    offset, out = 0, []
    while True:
        page = call(offset=offset, limit=250)
        out.extend(page[key])
        if not page.get("_links", {}).get("next"):
            return out
        offset += 250


def main():
    base, email, key, db = sys.argv[1:5]
    t0, c0 = time.monotonic(), time.process_time()
    api = TestRailAPI(base, email, key, warn_ignore=True)
    users = walk(api.users.get_users, "users")
    # The client's get_groups takes no paging arguments: the same session, with them.
    groups = walk(lambda **kw: api.groups.s.get("get_groups", params=kw), "groups")
    roles = api.roles.get_roles()["roles"]
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, email TEXT, is_active INTEGER, role_id INTEGER, fields TEXT)")
    con.execute("CREATE TABLE groups (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("CREATE TABLE members (group_id INTEGER, user_id INTEGER, PRIMARY KEY (group_id, user_id))")
    con.execute("CREATE TABLE roles (id INTEGER PRIMARY KEY, name TEXT)")
    with con:
        con.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)",
                        [(u["id"], u.get("name"), u.get("email"), u.get("is_active"), u.get("role_id"), json.dumps(u)) for u in users])
        con.executemany("INSERT INTO groups VALUES (?, ?)", [(g["id"], g.get("name")) for g in groups])
        con.executemany("INSERT OR IGNORE INTO members VALUES (?, ?)", [(g["id"], u) for g in groups for u in g.get("user_ids", [])])
        con.executemany("INSERT INTO roles VALUES (?, ?)", [(r["id"], r.get("name")) for r in roles])
    wall, cpu = time.monotonic() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"python baseline (testrail-api, {len(users)} users, {len(groups)} groups): "
          f"wall {wall:.2f} s, CPU {cpu:.3f} s, peak memory {peak:.1f} MB")


if __name__ == "__main__":
    main()
