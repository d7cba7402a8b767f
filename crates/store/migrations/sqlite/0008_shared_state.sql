-- What every replica (or every process on one file) must share: console sessions, provisioning
-- plans kept for their apply, and instance settings written once.

CREATE TABLE sessions (
    id_hash         TEXT PRIMARY KEY,       -- SHA-256 of the cookie value, never the value
    csrf            TEXT NOT NULL,
    token           TEXT NOT NULL,
    token_hash      TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    seq             INTEGER NOT NULL        -- creation order within one second
);
CREATE INDEX sessions_by_age ON sessions(created_at, seq);

CREATE TABLE plans (
    id              TEXT PRIMARY KEY,
    connection      TEXT NOT NULL,
    actions         TEXT NOT NULL,          -- JSON array of planned actions
    fingerprint     TEXT NOT NULL,
    actor           TEXT NOT NULL,
    max_deactivations INTEGER NOT NULL,
    force           INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('ready', 'applying', 'applied'))
);
CREATE INDEX plans_by_age ON plans(created_at);

CREATE TABLE instance_settings (
    name            TEXT PRIMARY KEY,
    value           TEXT NOT NULL
);

-- The TestRail request budget shared by every process talking to one instance: requests sent
-- per second, kept for a minute (a sliding window), and one row per instance to lock.
CREATE TABLE request_budget_instances (
    instance        TEXT PRIMARY KEY
);
CREATE TABLE request_budget_seconds (
    instance        TEXT NOT NULL,
    at              INTEGER NOT NULL,
    n               INTEGER NOT NULL,
    PRIMARY KEY (instance, at)
);

-- Each connection's joiner / leaver rules (the TOML text `accessrail flows` edits), so every
-- process applies the same ones.
CREATE TABLE connection_flows (
    connection_id   TEXT PRIMARY KEY REFERENCES connections(id) ON DELETE CASCADE,
    text            TEXT NOT NULL,
    updated_at      INTEGER NOT NULL
);
