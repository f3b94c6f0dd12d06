-- Slack Events API deliveries seen, one row per event_id: claimed before the listener runs,
-- handled_at set once the answer was 200. A claim whose handling failed is deleted, so
-- Slack's retry of it is handled; rows older than a day are removed as new events arrive.

CREATE TABLE slack_events (
    event_id    TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,               -- the event's type, e.g. app_home_opened
    claimed_at  TEXT NOT NULL,               -- UTC ISO-8601; a retry may take over a stale one
    handled_at  TEXT,
    attempts    INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX slack_events_claimed ON slack_events (claimed_at);
