-- Projects and who they give a role to (TestRail 7.3+), versioned like accounts: one row per
-- project version, one row per grant version (the project's default role, a group's project
-- role, a user's own project role). Effective access is derived, never stored.
CREATE TABLE project_versions (
    connection_id   TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    tr_project_id   INTEGER NOT NULL,
    valid_from_rev  INTEGER NOT NULL,
    valid_to_rev    INTEGER,
    name            TEXT,
    is_completed    INTEGER NOT NULL,
    completed_on    INTEGER,
    access_known    INTEGER NOT NULL,   -- 0: TestRail reported no access (before 7.3)
    users_known     INTEGER NOT NULL,   -- 0: per-user project roles not reported (Professional)
    PRIMARY KEY (connection_id, tr_project_id, valid_from_rev)
);
CREATE UNIQUE INDEX project_current ON project_versions(connection_id, tr_project_id) WHERE valid_to_rev IS NULL;

CREATE TABLE project_grant_versions (
    connection_id   TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    tr_project_id   INTEGER NOT NULL,
    principal       TEXT NOT NULL CHECK (principal IN ('default', 'group', 'user')),
    principal_id    INTEGER NOT NULL,   -- 0 for the default
    role_id         INTEGER NOT NULL,   -- 0: the user's global role
    role_name       TEXT,
    valid_from_rev  INTEGER NOT NULL,
    valid_to_rev    INTEGER,
    PRIMARY KEY (connection_id, tr_project_id, principal, principal_id, valid_from_rev)
);
CREATE UNIQUE INDEX project_grant_current
    ON project_grant_versions(connection_id, tr_project_id, principal, principal_id) WHERE valid_to_rev IS NULL;
CREATE INDEX project_grant_by_rev ON project_grant_versions(connection_id, valid_from_rev);

-- A scan that read projects: the first one of a connection is the projects' baseline.
ALTER TABLE scans ADD COLUMN projects_seen INTEGER;
ALTER TABLE changes ADD COLUMN tr_project_id INTEGER;
ALTER TABLE changes ADD COLUMN project_name TEXT;
CREATE INDEX changes_by_project ON changes(connection_id, tr_project_id, id) WHERE tr_project_id IS NOT NULL;
-- The newest revision of a connection, asked by every view that is cached until it changes.
CREATE INDEX revisions_by_connection ON revisions(connection_id, id);
