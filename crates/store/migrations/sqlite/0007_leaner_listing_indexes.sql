-- Leaner indexes for the listing.
--
-- Substring search (`q`) reads the narrow covering index `account_current_search` instead of
-- a trigram index: a scan of the current keys costs the same for every needle (the trigram
-- index was slowest for the broad needles people type, like a mail domain) and the scan no
-- longer pays for a trigram index on every account it writes.
DROP TRIGGER IF EXISTS account_search_add;
DROP TRIGGER IF EXISTS account_search_close;
DROP TRIGGER IF EXISTS account_search_rekey;
DROP TRIGGER IF EXISTS account_search_delete;
DROP TABLE IF EXISTS account_search;

-- The email-ordered index holds both keys too, so a search sorted by email reads no rows.
DROP INDEX IF EXISTS account_current_email;
CREATE INDEX account_current_email ON account_versions(connection_id, email_key, tr_user_id, name_key, is_active, role_id, is_admin) WHERE valid_to_rev IS NULL;

-- Only a match names an identity, so the leaver filter (state 'matched', status 'leaver') is
-- served by `match_current_state`; this index only cost every match write.
DROP INDEX IF EXISTS match_current_identity;

-- Match-state filters in id order read the match index in that order (a page is its first
-- entries), and the leaver filter reads (state, identity_status).
DROP INDEX IF EXISTS match_current_state;
CREATE INDEX match_current_state ON match_versions(connection_id, state, identity_status, tr_user_id) WHERE valid_to_rev IS NULL;
CREATE INDEX match_current_state_id ON match_versions(connection_id, state, tr_user_id, identity_status) WHERE valid_to_rev IS NULL;

-- The current accounts counted by every combination of the filters a listing can set without
-- a search or a group (active, admin, role, match state, identity status): a listing's total is
-- a sum over a few rows instead of a count over every account. Kept with `account_counts`.
CREATE TABLE account_facets (
    connection_id   TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    is_active       INTEGER NOT NULL,
    is_admin        INTEGER NOT NULL,            -- 1 only when TestRail said so
    role_id         INTEGER,
    state           TEXT,                        -- NULL: no match recorded
    identity_status TEXT,
    n               INTEGER NOT NULL
);
CREATE INDEX account_facets_by_connection ON account_facets(connection_id);
INSERT INTO account_facets (connection_id, is_active, is_admin, role_id, state, identity_status, n)
SELECT a.connection_id, a.is_active, COALESCE(a.is_admin = 1, 0), a.role_id, m.state, m.identity_status, COUNT(*)
FROM account_versions a LEFT JOIN match_versions m
  ON m.connection_id = a.connection_id AND m.tr_user_id = a.tr_user_id AND m.valid_to_rev IS NULL
WHERE a.valid_to_rev IS NULL
GROUP BY a.connection_id, a.is_active, COALESCE(a.is_admin = 1, 0), a.role_id, m.state, m.identity_status;
