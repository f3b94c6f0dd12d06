-- The customer messages: one row per case and outcome (refunded, partly_refunded, denied,
-- adjusted), written in the transaction that closes the case, so a message is owed exactly
-- when a case closes, and never twice (a duplicate close, a restart, a REFUNDED -> FAILED ->
-- REFUNDED round trip all meet the unique key). The row keeps no address: the email is read
-- from Checkfront when it is sent. A person's edited text waits here until it is sent, then
-- is cleared.
--   state: new (the sender has not looked yet) | draft (review mode: waits for Send)
--          | queued (to send now) | sending (SMTP under way) | sent | failed (retries spent)
--          | off (CUSTOMER_MESSAGES=off when the case closed: never sent)
CREATE TABLE customer_messages (
    id INTEGER PRIMARY KEY,
    case_id INTEGER NOT NULL REFERENCES cases (id),
    outcome TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'new',
    subject TEXT,
    text_body TEXT,
    edited_by TEXT,
    message_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created_at TEXT NOT NULL,
    next_at TEXT NOT NULL,
    sent_at TEXT,
    UNIQUE (case_id, outcome)
);

-- what the sender reads each pass: the rows still to look at or to send, by when they are due
CREATE INDEX customer_messages_due ON customer_messages (next_at)
    WHERE state IN ('new', 'queued', 'sending');
