-- Slack: messages waiting to be posted (kept across restarts) and each case's card.

CREATE TABLE slack_outbox (
    id         INTEGER PRIMARY KEY,
    channel    TEXT NOT NULL,
    kind       TEXT NOT NULL,                 -- card | compact | thread | alert
    case_id    INTEGER,
    payload    TEXT NOT NULL,                 -- JSON: text/blocks for alerts and threads
    created_at TEXT NOT NULL,
    next_at    TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    sent_at    TEXT,
    error      TEXT
);
CREATE INDEX slack_outbox_due ON slack_outbox (sent_at, next_at);

CREATE TABLE slack_messages (
    case_id    INTEGER PRIMARY KEY REFERENCES cases (id),
    channel    TEXT NOT NULL,
    ts         TEXT NOT NULL,
    kind       TEXT NOT NULL,                 -- card | compact
    posted_at  TEXT NOT NULL
);
