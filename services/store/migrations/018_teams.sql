-- Microsoft Teams: where the bot may post (conversation references captured when the app is
-- installed in a team or spoken to), the Teams outbox (the same pattern as slack_outbox; its
-- ids are text made by the bot, so one file serves SQLite and PostgreSQL) and the activity
-- that shows each case's card (updated in place on every change).
CREATE TABLE teams_conversations (
    conversation_id TEXT PRIMARY KEY,
    channel_id TEXT,
    team_id TEXT,
    tenant_id TEXT,
    service_url TEXT NOT NULL,
    kind TEXT NOT NULL,
    reference TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX teams_conversations_channel ON teams_conversations (channel_id);
CREATE TABLE teams_outbox (
    id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    case_id INTEGER,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created_at TEXT NOT NULL,
    next_at TEXT NOT NULL,
    sent_at TEXT
);
CREATE INDEX teams_outbox_due ON teams_outbox (sent_at, next_at);
CREATE TABLE teams_messages (
    case_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    activity_id TEXT NOT NULL,
    posted_at TEXT NOT NULL,
    PRIMARY KEY (case_id, kind)
);
