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
