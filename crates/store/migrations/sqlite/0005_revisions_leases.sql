-- Revisions are numbered when they commit, not when they start: a scan that started before a
-- provisioning action and commits after it gets the higher number, so history is totally
-- ordered by commit. Versions are valid from one revision until (excluding) another.
--
-- `scans.revision` is that number (NULL until the scan or provisioning action commits, and for
-- failed or interrupted scans). `scans.base_revision` is the newest revision committed when a
-- scan began reading TestRail: anything committed after it is newer than what the scan read.
-- Scans that stopped without finishing are `interrupted`. A `match` revision records match
-- results that changed without a scan (an identity import, a manual match decision).
--
-- Leases carry a generation (fencing token) that grows with each new holder; a released lease
-- is kept with expires_at = 0 so the generation never goes back.

CREATE TABLE scans_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id   TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    started_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    status          TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted')),
    error           TEXT,
    requests        INTEGER NOT NULL DEFAULT 0,
    retries         INTEGER NOT NULL DEFAULT 0,
    users_seen      INTEGER NOT NULL DEFAULT 0,
    groups_seen     INTEGER NOT NULL DEFAULT 0,
    active_seats    INTEGER NOT NULL DEFAULT 0,
    changes         INTEGER NOT NULL DEFAULT 0,
    rows_written    INTEGER NOT NULL DEFAULT 0,
    warnings        TEXT NOT NULL DEFAULT '[]',
    kind            TEXT NOT NULL DEFAULT 'scan' CHECK (kind IN ('scan', 'provision', 'match')),
    revision        INTEGER UNIQUE,
    base_revision   INTEGER
);

-- Until now a revision was the scan's id, so committed rows keep their id as their revision.
INSERT INTO scans_new (id, connection_id, started_at, finished_at, status, error, requests, retries,
                       users_seen, groups_seen, active_seats, changes, rows_written, warnings, kind,
                       revision, base_revision)
SELECT id, connection_id, started_at, finished_at, status, error, requests, retries, users_seen,
       groups_seen, active_seats, changes, rows_written, warnings, kind,
       CASE WHEN status = 'succeeded' THEN id END, NULL
FROM scans;

-- Revision numbers come from their own table, whose rows are never deleted (removing a
-- connection removes its scans, not its revision numbers), so a number is never handed out twice
-- and always exceeds every earlier one.
CREATE TABLE revisions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id   TEXT NOT NULL,
    kind            TEXT NOT NULL,
    committed_at    INTEGER NOT NULL
);
INSERT INTO revisions (id, connection_id, kind, committed_at)
SELECT id, connection_id, kind, COALESCE(finished_at, started_at) FROM scans WHERE status = 'succeeded';

DROP TABLE scans;
ALTER TABLE scans_new RENAME TO scans;
CREATE INDEX scans_by_connection ON scans(connection_id, id);

ALTER TABLE account_versions RENAME COLUMN valid_from_scan TO valid_from_rev;
ALTER TABLE account_versions RENAME COLUMN valid_to_scan TO valid_to_rev;
ALTER TABLE group_versions RENAME COLUMN valid_from_scan TO valid_from_rev;
ALTER TABLE group_versions RENAME COLUMN valid_to_scan TO valid_to_rev;
ALTER TABLE membership_versions RENAME COLUMN valid_from_scan TO valid_from_rev;
ALTER TABLE membership_versions RENAME COLUMN valid_to_scan TO valid_to_rev;
ALTER TABLE role_versions RENAME COLUMN valid_from_scan TO valid_from_rev;
ALTER TABLE role_versions RENAME COLUMN valid_to_scan TO valid_to_rev;

ALTER TABLE leases ADD COLUMN generation INTEGER NOT NULL DEFAULT 1;

-- The audit log gains `started`: an entry written right before a provisioning step's first
-- write to TestRail, so a step cut short by a crash is still on record. Entries are copied
-- unchanged (the hash chain holds); the append-only triggers are recreated.
CREATE TABLE audit_log_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at              INTEGER NOT NULL,
    actor           TEXT NOT NULL,
    connection      TEXT NOT NULL,
    action          TEXT NOT NULL,
    target          TEXT NOT NULL,
    before          TEXT,
    after           TEXT,
    calls           TEXT NOT NULL,
    outcome         TEXT NOT NULL CHECK (outcome IN ('started', 'done', 'noop', 'not_run', 'failed')),
    message         TEXT,
    prev_hash       TEXT NOT NULL,
    hash            TEXT NOT NULL
);
INSERT INTO audit_log_new (id, at, actor, connection, action, target, before, after, calls, outcome,
                           message, prev_hash, hash)
SELECT id, at, actor, connection, action, target, before, after, calls, outcome, message, prev_hash, hash
FROM audit_log;
DROP TABLE audit_log;
ALTER TABLE audit_log_new RENAME TO audit_log;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
