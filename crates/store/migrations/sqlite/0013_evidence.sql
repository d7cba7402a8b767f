-- Activity evidence (issue 14): TestRail has no last-login time, so Accessrail records who
-- created or updated artefacts, and when. One row per piece of evidence, so a re-read (the
-- watermark's overlap) never counts anything twice.

CREATE TABLE evidence_runs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id   TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    started_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    status          TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    read_from       INTEGER NOT NULL,       -- artefacts created or updated from here were read
    requests        INTEGER NOT NULL DEFAULT 0,
    estimate        INTEGER NOT NULL DEFAULT 0,
    evidence        INTEGER NOT NULL DEFAULT 0,  -- pieces of evidence read (new or not)
    error           TEXT
);
CREATE INDEX evidence_runs_by_connection ON evidence_runs(connection_id, id);

CREATE TABLE evidence (
    connection_id   TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,          -- result, run, plan, case_created, case_updated
    artefact_id     INTEGER NOT NULL,       -- the result's, run's, plan's or case's id
    tr_user_id      INTEGER NOT NULL,
    at              INTEGER NOT NULL,
    project_id      INTEGER,
    run_id          INTEGER,                -- results: their run
    PRIMARY KEY (connection_id, kind, artefact_id, tr_user_id, at)
);
CREATE INDEX evidence_by_user ON evidence(connection_id, tr_user_id, at);
