-- SCIM 2.0 (issue 15): identity providers provision TestRail through Accessrail.

-- A SCIM token is valid only under /scim/v2/<its connection>/ (and nowhere else).
ALTER TABLE api_tokens ADD COLUMN scim_connection TEXT;

-- What SCIM knows that TestRail does not: a resource's externalId, which token created it
-- (and when: an identity provider's own test cycle does not count against the deactivation
-- cap), and whether it was DELETEd (TestRail cannot delete: the account is deactivated and
-- its id answers 404 from then on).
CREATE TABLE scim_resources (
    connection_id   TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    kind            TEXT NOT NULL CHECK (kind IN ('user', 'group')),
    tr_id           INTEGER NOT NULL,
    external_id     TEXT,
    user_name       TEXT,                   -- the client's userName, when it is not the email
    email_meta      TEXT,                   -- JSON: the email's other sub-attributes as written
    token           TEXT NOT NULL,          -- the SCIM token that last wrote it
    created_by      TEXT,                   -- the SCIM token that created it in TestRail
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    deleted_at      INTEGER,
    PRIMARY KEY (connection_id, kind, tr_id)
);
CREATE INDEX scim_resources_by_external ON scim_resources(connection_id, kind, external_id);

-- Every deactivation SCIM asked for, counted against the cap per hour, or held for an
-- administrator's approval when the cap is reached.
CREATE TABLE scim_deactivations (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id   TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    token           TEXT NOT NULL,
    tr_user_id      INTEGER NOT NULL,
    email           TEXT NOT NULL,
    requested_at    INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('counted', 'exempt', 'held', 'approved', 'rejected', 'used')),
    decided_by      TEXT,
    decided_at      INTEGER
);
CREATE INDEX scim_deactivations_by_time ON scim_deactivations(connection_id, requested_at);
CREATE INDEX scim_deactivations_by_user ON scim_deactivations(connection_id, tr_user_id, status);
