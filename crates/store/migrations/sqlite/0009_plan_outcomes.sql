-- Plans are applied by a job on any replica: a plan records when its apply started sending to
-- TestRail and how it ended (the apply report as JSON, or why it stopped). A plan whose apply
-- was cut short (its process died) is 'interrupted' and never applied again.
-- Kept plans are short-lived (two hours); the table is recreated rather than copied.
DROP TABLE plans;
CREATE TABLE plans (
    id              TEXT PRIMARY KEY,
    connection      TEXT NOT NULL,
    actions         TEXT NOT NULL,          -- JSON array of planned actions
    fingerprint     TEXT NOT NULL,
    actor           TEXT NOT NULL,
    max_deactivations INTEGER NOT NULL,
    force           INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('ready', 'applying', 'applied', 'interrupted')),
    started_at      INTEGER,                -- when its apply began sending to TestRail
    outcome         TEXT                    -- JSON: the apply report, or {"error": ...}
);
CREATE INDEX plans_by_age ON plans(created_at);
