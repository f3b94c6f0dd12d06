-- Ownership and time on a waiting case (issue 12).

-- who is on a case ("I'll take it"): at most one holder, claimed and released by
-- compare-and-set on this row
CREATE TABLE case_claims (
    case_id    INTEGER PRIMARY KEY REFERENCES cases (id),
    user       TEXT NOT NULL,
    claimed_at TEXT NOT NULL
);
CREATE INDEX case_claims_user ON case_claims (user);

-- the reminder and the escalation a waiting case was given: each kind once per case,
-- whatever the restarts and scheduler runs
CREATE TABLE case_nudges (
    case_id INTEGER NOT NULL REFERENCES cases (id),
    kind    TEXT NOT NULL,              -- reminder | escalation
    at      TEXT NOT NULL,
    PRIMARY KEY (case_id, kind)
);

-- who asked for a refund from Slack (Request refund under a quote) and where, to be told
-- privately once the case is decided
CREATE TABLE case_requests (
    case_id   INTEGER PRIMARY KEY REFERENCES cases (id),
    user      TEXT NOT NULL,
    channel   TEXT NOT NULL,
    thread_ts TEXT
);
