-- Access reviews (issue 13): a review freezes one scan's accounts as items, each routed to a
-- reviewer; reviewers decide and submit, an administrator approves each submission, and
-- closing turns revocations into one provisioning plan whose outcomes are kept per item.

-- Reviewer sign-ins: an API token bound to one reviewer's email can only reach the review
-- pages and the review API, and only that reviewer's items.
ALTER TABLE api_tokens ADD COLUMN reviewer TEXT;

-- Who reviews access to a group or a project (by TestRail id; the name as it was when set).
CREATE TABLE access_owners (
    connection_id   TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    kind            TEXT NOT NULL CHECK (kind IN ('group', 'project')),
    target_id       INTEGER NOT NULL,
    target_name     TEXT NOT NULL,
    owner_email     TEXT NOT NULL,          -- lower case
    set_at          INTEGER NOT NULL,
    PRIMARY KEY (connection_id, kind, target_id)
);

CREATE TABLE reviews (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id   TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    scope           TEXT NOT NULL,
    scan_id         INTEGER NOT NULL,       -- the snapshot: the scan whose revision was frozen
    undecided       TEXT NOT NULL CHECK (undecided IN ('keep', 'revoke')),
    every           TEXT,                   -- recurrence, e.g. 3mo
    fallbacks       TEXT NOT NULL,          -- JSON array of reviewer emails, lower case
    due_at          INTEGER,
    status          TEXT NOT NULL CHECK (status IN ('open', 'closing', 'closed')),  -- closing: a close holds it (decisions frozen)
    created_at      INTEGER NOT NULL,
    created_by      TEXT NOT NULL,
    closed_at       INTEGER,
    closed_by       TEXT,
    outcome         TEXT,                   -- JSON summary of the close
    previous_id     INTEGER UNIQUE REFERENCES reviews(id),  -- the review this one recurs from
    next_start_at   INTEGER                 -- when the next one starts (recurring reviews)
);
CREATE INDEX reviews_by_connection ON reviews(connection_id, id);

CREATE TABLE review_items (
    review_id       INTEGER NOT NULL REFERENCES reviews(id) ON DELETE CASCADE,
    item            INTEGER NOT NULL,       -- 1.., in email order
    tr_user_id      INTEGER NOT NULL,
    email           TEXT NOT NULL,
    name            TEXT NOT NULL,
    reviewer        TEXT NOT NULL,          -- lower case
    route           TEXT NOT NULL,          -- why this reviewer
    snapshot        TEXT NOT NULL,          -- JSON entitlements at the snapshot
    identity        TEXT,                   -- JSON: the matched identity then
    decision        TEXT,
    action          TEXT,
    comment         TEXT,
    decided_by      TEXT,
    decided_at      INTEGER,
    final_decision  TEXT,                   -- at close
    final_source    TEXT,
    outcome         TEXT,                   -- what closing did
    outcome_audit_id INTEGER,
    outcome_at      INTEGER,
    PRIMARY KEY (review_id, item)
);
-- Covers progress, decision counts and which items a page shows, without reading the items'
-- snapshots (a review of 50,000 accounts holds about 150 MB of them).
CREATE INDEX review_items_by_reviewer ON review_items(review_id, reviewer, decision, item);

CREATE TABLE review_submissions (
    review_id       INTEGER NOT NULL REFERENCES reviews(id) ON DELETE CASCADE,
    reviewer        TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('submitted', 'approved', 'sent_back')),
    submitted_at    INTEGER NOT NULL,
    digest          TEXT NOT NULL,          -- submission_digest of the decisions submitted
    submitted_by    TEXT NOT NULL,          -- who submitted (the actor): never its approver
    judged_by       TEXT,
    judged_at       INTEGER,
    comment         TEXT,
    PRIMARY KEY (review_id, reviewer)
);
