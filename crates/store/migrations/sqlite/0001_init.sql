-- Accessrail store, version 1. Never edit an applied migration: add a new one.

CREATE TABLE connections (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    base_url        TEXT NOT NULL,
    email           TEXT NOT NULL,
    secret          BLOB NOT NULL,          -- nonce || AEAD ciphertext of the API key
    secret_key_id   TEXT NOT NULL,          -- id of the master key that sealed it
    request_budget  INTEGER,                -- requests per minute, NULL: none
    groups_supported INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE TABLE scans (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id   TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    started_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    status          TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    error           TEXT,
    requests        INTEGER NOT NULL DEFAULT 0,
    retries         INTEGER NOT NULL DEFAULT 0,
    users_seen      INTEGER NOT NULL DEFAULT 0,
    groups_seen     INTEGER NOT NULL DEFAULT 0,
    active_seats    INTEGER NOT NULL DEFAULT 0,
    changes         INTEGER NOT NULL DEFAULT 0,
    rows_written    INTEGER NOT NULL DEFAULT 0,
    warnings        TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX scans_by_connection ON scans(connection_id, id);

-- Each row is one version of an account, valid from one scan until (excluding) another.
CREATE TABLE account_versions (
    connection_id   TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    tr_user_id      INTEGER NOT NULL,
    valid_from_scan INTEGER NOT NULL,
    valid_to_scan   INTEGER,
    name            TEXT,
    email           TEXT,
    is_active       INTEGER NOT NULL,
    role_id         INTEGER,
    role_name       TEXT,
    is_admin        INTEGER,
    fields          TEXT NOT NULL,
    PRIMARY KEY (connection_id, tr_user_id, valid_from_scan)
);
CREATE UNIQUE INDEX account_current ON account_versions(connection_id, tr_user_id) WHERE valid_to_scan IS NULL;

CREATE TABLE group_versions (
    connection_id   TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    tr_group_id     INTEGER NOT NULL,
    valid_from_scan INTEGER NOT NULL,
    valid_to_scan   INTEGER,
    name            TEXT,
    PRIMARY KEY (connection_id, tr_group_id, valid_from_scan)
);
CREATE UNIQUE INDEX group_current ON group_versions(connection_id, tr_group_id) WHERE valid_to_scan IS NULL;

CREATE TABLE membership_versions (
    connection_id   TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    tr_group_id     INTEGER NOT NULL,
    tr_user_id      INTEGER NOT NULL,
    valid_from_scan INTEGER NOT NULL,
    valid_to_scan   INTEGER,
    PRIMARY KEY (connection_id, tr_group_id, tr_user_id, valid_from_scan)
);
CREATE UNIQUE INDEX membership_current ON membership_versions(connection_id, tr_group_id, tr_user_id) WHERE valid_to_scan IS NULL;

CREATE TABLE role_versions (
    connection_id   TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    tr_role_id      INTEGER NOT NULL,
    valid_from_scan INTEGER NOT NULL,
    valid_to_scan   INTEGER,
    name            TEXT,
    is_default      INTEGER,
    is_project_admin INTEGER,
    PRIMARY KEY (connection_id, tr_role_id, valid_from_scan)
);
CREATE UNIQUE INDEX role_current ON role_versions(connection_id, tr_role_id) WHERE valid_to_scan IS NULL;

CREATE TABLE changes (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id   TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    scan_id         INTEGER NOT NULL,
    at              INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    tr_user_id      INTEGER,
    tr_group_id     INTEGER,
    subject         TEXT,
    before          TEXT,
    after           TEXT
);
CREATE INDEX changes_by_connection ON changes(connection_id, at);

CREATE TABLE identities (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('active', 'leaver')),
    emails          TEXT NOT NULL,          -- JSON array, primary first
    attributes      TEXT NOT NULL,          -- JSON object
    gone            INTEGER NOT NULL DEFAULT 0,
    updated_at      INTEGER NOT NULL
);

CREATE TABLE match_overrides (
    connection_id   TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    tr_user_id      INTEGER NOT NULL,
    identity_id     TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('pin', 'exclude')),
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (connection_id, tr_user_id, identity_id)
);

CREATE TABLE leases (
    name            TEXT PRIMARY KEY,
    holder          TEXT NOT NULL,
    expires_at      INTEGER NOT NULL
);
