-- Match results are stored, versioned like the rest of history, and updated when their inputs
-- change (a scan, a provisioning action, an identity import, a manual match decision); reads
-- never recompute them. Accounts carry lower-cased keys for sorting and searching in SQL.

CREATE TABLE match_versions (
    connection_id   TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    tr_user_id      INTEGER NOT NULL,
    valid_from_rev  INTEGER NOT NULL,
    valid_to_rev    INTEGER,
    state           TEXT NOT NULL CHECK (state IN ('matched', 'unmatched', 'ambiguous', 'forgotten')),
    identity_id     TEXT,
    identity_name   TEXT,
    identity_status TEXT,                   -- active, leaver or gone, when matched
    pinned          INTEGER NOT NULL DEFAULT 0,
    reason          TEXT NOT NULL,
    candidates      TEXT NOT NULL DEFAULT '[]',  -- JSON array of identity ids (ambiguous)
    PRIMARY KEY (connection_id, tr_user_id, valid_from_rev)
);
CREATE UNIQUE INDEX match_current ON match_versions(connection_id, tr_user_id) WHERE valid_to_rev IS NULL;
CREATE INDEX match_current_state ON match_versions(connection_id, state, identity_status) WHERE valid_to_rev IS NULL;

-- Lower-cased (Unicode) name and email: sort keys and the substring search. Rows written before
-- this migration get SQLite's ASCII lower(); every new version is written with Rust's.
ALTER TABLE account_versions ADD COLUMN name_key TEXT NOT NULL DEFAULT '';
ALTER TABLE account_versions ADD COLUMN email_key TEXT NOT NULL DEFAULT '';
UPDATE account_versions SET name_key = lower(COALESCE(name, '')), email_key = lower(COALESCE(email, ''));

CREATE INDEX account_current_name ON account_versions(connection_id, name_key) WHERE valid_to_rev IS NULL;
CREATE INDEX account_current_email ON account_versions(connection_id, email_key) WHERE valid_to_rev IS NULL;
CREATE INDEX account_current_role ON account_versions(connection_id, role_id) WHERE valid_to_rev IS NULL;
CREATE INDEX account_by_rev ON account_versions(connection_id, valid_from_rev);
CREATE INDEX membership_current_user ON membership_versions(connection_id, tr_user_id) WHERE valid_to_rev IS NULL;
CREATE INDEX membership_by_user ON membership_versions(connection_id, tr_user_id, valid_from_rev);
CREATE INDEX match_by_rev ON match_versions(connection_id, tr_user_id, valid_from_rev);
