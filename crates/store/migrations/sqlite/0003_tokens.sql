-- Named API tokens for the JSON API and the console: only a SHA-256 hash is stored.
CREATE TABLE api_tokens (
    name            TEXT PRIMARY KEY,
    hash            TEXT NOT NULL UNIQUE,
    created_at      INTEGER NOT NULL,
    revoked_at      INTEGER
);
