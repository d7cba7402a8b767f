-- The console's page of an account reads that account's changes and audit entries, newest
-- first: an index for each (as SQLite's migration 0010).
CREATE INDEX changes_by_user ON changes(connection_id, tr_user_id, id);
CREATE INDEX audit_by_target ON audit_log(connection, lower(target), id);
CREATE INDEX changes_by_audit ON changes(audit_id) WHERE audit_id IS NOT NULL;

-- An API key that passed the console's Test, kept sealed (with the master key, bound to the
-- session and to what was tested) for the Save that follows, so it need not be pasted again.
-- One per signed-in session, gone with the session, kept for minutes.
CREATE TABLE session_setup_keys (
    session_hash    TEXT PRIMARY KEY REFERENCES sessions(id_hash) ON DELETE CASCADE,
    target          TEXT NOT NULL,          -- the subdomain or URL that was tested
    email           TEXT NOT NULL,
    secret          BYTEA NOT NULL,         -- nonce || AEAD ciphertext of the API key
    secret_key_id   TEXT NOT NULL,          -- id of the master key that sealed it
    created_at      BIGINT NOT NULL
);
CREATE INDEX session_setup_keys_by_age ON session_setup_keys(created_at);
