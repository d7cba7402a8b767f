-- Provisioning: opt-in per connection, protected accounts, an append-only audit log, and
-- provisioning revisions beside scans (scans.kind).

ALTER TABLE connections ADD COLUMN provisioning_enabled INTEGER NOT NULL DEFAULT 0;

ALTER TABLE scans ADD COLUMN kind TEXT NOT NULL DEFAULT 'scan' CHECK (kind IN ('scan', 'provision'));

ALTER TABLE changes ADD COLUMN audit_id INTEGER;

CREATE TABLE protected_accounts (
    connection_id   TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    email           TEXT NOT NULL,          -- lower-cased
    owner           TEXT NOT NULL,
    reason          TEXT NOT NULL,
    expires_at      INTEGER,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (connection_id, email)
);

-- Append-only: each entry carries the hash of the previous one.
CREATE TABLE audit_log (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at              INTEGER NOT NULL,
    actor           TEXT NOT NULL,
    connection      TEXT NOT NULL,
    action          TEXT NOT NULL,
    target          TEXT NOT NULL,
    before          TEXT,
    after           TEXT,
    calls           TEXT NOT NULL,          -- JSON array of TestRail calls made
    outcome         TEXT NOT NULL CHECK (outcome IN ('done', 'noop', 'not_run', 'failed')),
    message         TEXT,
    prev_hash       TEXT NOT NULL,
    hash            TEXT NOT NULL
);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
