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
CREATE INDEX match_current_state ON match_versions(connection_id, state, identity_status, tr_user_id) WHERE valid_to_rev IS NULL;
CREATE INDEX match_current_identity ON match_versions(connection_id, identity_status, tr_user_id) WHERE valid_to_rev IS NULL;

-- Lower-cased (Unicode) name and email: sort keys and the substring search. Rows written before
-- this migration get SQLite's ASCII lower(); every new version is written with Rust's.
ALTER TABLE account_versions ADD COLUMN name_key TEXT NOT NULL DEFAULT '';
ALTER TABLE account_versions ADD COLUMN email_key TEXT NOT NULL DEFAULT '';
-- A digest of what a scan compares (name, email, state, role, admin, fields): a rescan skips the
-- accounts whose digest is unchanged. NULL for rows written before it (filled in by the next scan).
ALTER TABLE account_versions ADD COLUMN digest INTEGER;
UPDATE account_versions SET name_key = lower(COALESCE(name, '')), email_key = lower(COALESCE(email, ''));

-- Current accounts in each listing order (the id breaks ties), and the narrow columns filters
-- read, so a page and a count are read from an index.
CREATE INDEX account_current_name ON account_versions(connection_id, name_key, tr_user_id, email_key, is_active, role_id, is_admin) WHERE valid_to_rev IS NULL;
CREATE INDEX account_current_email ON account_versions(connection_id, email_key, tr_user_id, is_active, role_id, is_admin) WHERE valid_to_rev IS NULL;
CREATE INDEX account_current_role ON account_versions(connection_id, role_id, tr_user_id) WHERE valid_to_rev IS NULL;
CREATE INDEX account_current_role_name ON account_versions(connection_id, COALESCE(role_name, ''), tr_user_id) WHERE valid_to_rev IS NULL;
CREATE INDEX account_current_search ON account_versions(connection_id, tr_user_id, name_key, email_key, is_active, role_id, is_admin) WHERE valid_to_rev IS NULL;
CREATE INDEX account_current_flags ON account_versions(connection_id, is_active, is_admin, role_id, tr_user_id) WHERE valid_to_rev IS NULL;
CREATE INDEX membership_current_user ON membership_versions(connection_id, tr_user_id) WHERE valid_to_rev IS NULL;
-- Changes newest first, a page at a time.
CREATE INDEX changes_by_connection_id ON changes(connection_id, id);

-- Counts over the current accounts, kept up to date by every write that changes them (a scan,
-- a provisioning action, new match results), so the summary is one row, never a count.
CREATE TABLE account_counts (
    connection_id    TEXT PRIMARY KEY REFERENCES connections(id) ON DELETE CASCADE,
    accounts         INTEGER NOT NULL,
    active           INTEGER NOT NULL,
    unmatched_active INTEGER NOT NULL,
    ambiguous        INTEGER NOT NULL,
    forgotten        INTEGER NOT NULL,
    leavers_active   INTEGER NOT NULL,
    admins           INTEGER NOT NULL
);

-- Member and active-member counts per current group, kept the same way (the groups page).
CREATE TABLE group_counts (
    connection_id    TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    tr_group_id      INTEGER NOT NULL,
    members          INTEGER NOT NULL,
    active_members   INTEGER NOT NULL,
    PRIMARY KEY (connection_id, tr_group_id)
);

-- Substring search (`q`) over the current accounts: a trigram index on the lower-cased keys,
-- kept in step with the current versions by triggers. Needles under three characters, and
-- history, use a plain scan.
CREATE VIRTUAL TABLE account_search USING fts5(email_key, name_key, tokenize = 'trigram');
INSERT INTO account_search (rowid, email_key, name_key)
SELECT rowid, email_key, name_key FROM account_versions WHERE valid_to_rev IS NULL;

CREATE TRIGGER account_search_add AFTER INSERT ON account_versions WHEN new.valid_to_rev IS NULL
BEGIN
    INSERT INTO account_search (rowid, email_key, name_key) VALUES (new.rowid, new.email_key, new.name_key);
END;

CREATE TRIGGER account_search_close AFTER UPDATE OF valid_to_rev ON account_versions
WHEN old.valid_to_rev IS NULL AND new.valid_to_rev IS NOT NULL
BEGIN
    DELETE FROM account_search WHERE rowid = old.rowid;
END;

CREATE TRIGGER account_search_rekey AFTER UPDATE OF name_key, email_key ON account_versions
WHEN old.valid_to_rev IS NULL AND new.valid_to_rev IS NULL
BEGIN
    DELETE FROM account_search WHERE rowid = old.rowid;
    INSERT INTO account_search (rowid, email_key, name_key) VALUES (new.rowid, new.email_key, new.name_key);
END;

CREATE TRIGGER account_search_delete AFTER DELETE ON account_versions WHEN old.valid_to_rev IS NULL
BEGIN
    DELETE FROM account_search WHERE rowid = old.rowid;
END;
