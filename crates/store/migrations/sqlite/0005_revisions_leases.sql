-- Revisions are numbered when they commit, not when they start: a scan that started before a
-- provisioning action and commits after it gets the higher number, so history is totally
-- ordered by commit. Versions are valid from one revision until (excluding) another.
--
-- `scans.revision` is that number (NULL until the scan or provisioning action commits, and for
-- failed or interrupted scans). `scans.base_revision` is the newest revision committed when a
-- scan began reading TestRail: anything committed after it is newer than what the scan read.
-- Scans that stopped without finishing are `interrupted`.
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
    kind            TEXT NOT NULL DEFAULT 'scan' CHECK (kind IN ('scan', 'provision')),
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
