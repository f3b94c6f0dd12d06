-- Refund cases, their quotes, decisions and executions; received webhooks; the audit chain.

CREATE TABLE webhook_events (
    id           INTEGER PRIMARY KEY,
    source       TEXT NOT NULL,               -- checkfront | stripe | slack
    event_id     TEXT NOT NULL,               -- provider id, or a hash of the body
    kind         TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    payload      TEXT NOT NULL,
    processed_at TEXT,
    outcome      TEXT,
    UNIQUE (source, event_id)
);

CREATE TABLE booking_payments (
    booking_code   TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    status         TEXT NOT NULL,
    payload        TEXT NOT NULL,             -- the Checkfront transaction object
    received_at    TEXT NOT NULL,
    PRIMARY KEY (booking_code, transaction_id, status)
);

CREATE TABLE cases (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    booking_id     TEXT NOT NULL,
    booking_code   TEXT NOT NULL,
    status         TEXT NOT NULL,
    currency       TEXT NOT NULL,
    cancelled_at   TEXT NOT NULL,
    waiver         TEXT,
    source         TEXT NOT NULL,             -- checkfront_webhook | slack | cli
    requested_by   TEXT,
    quote_version  TEXT,
    refund_amount  INTEGER NOT NULL DEFAULT 0, -- what the current quote offers
    approved_amount INTEGER,                   -- what was approved (may be adjusted)
    status_reason  TEXT,
    customer_hash  TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    revision       INTEGER NOT NULL DEFAULT 0
);
-- one open case per booking; closed cases stay for history
CREATE UNIQUE INDEX cases_one_open_per_booking ON cases (booking_id)
    WHERE status NOT IN ('refunded', 'partially_refunded', 'denied', 'skipped');
CREATE INDEX cases_status ON cases (status);

CREATE TABLE quotes (
    id          INTEGER PRIMARY KEY,
    case_id     INTEGER NOT NULL REFERENCES cases (id),
    version     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    snapshot    TEXT NOT NULL,                -- booking snapshot the quote was made on
    quote       TEXT NOT NULL,                -- Quote.to_dict()
    UNIQUE (case_id, version)
);

CREATE TABLE decisions (
    id            INTEGER PRIMARY KEY,
    case_id       INTEGER NOT NULL REFERENCES cases (id),
    decision      TEXT NOT NULL,              -- auto_approve | approve | deny | skip
    amount        INTEGER,
    reason        TEXT,
    decided_by    TEXT NOT NULL,
    quote_version TEXT,
    decided_at    TEXT NOT NULL
);

CREATE TABLE executions (
    id               INTEGER PRIMARY KEY,
    case_id          INTEGER NOT NULL REFERENCES cases (id),
    payment_ref      TEXT NOT NULL,           -- pi_/ch_ id
    amount           INTEGER NOT NULL,
    currency         TEXT NOT NULL,
    attempt          INTEGER NOT NULL,
    idempotency_key  TEXT NOT NULL UNIQUE,
    status           TEXT NOT NULL,           -- planned | pending | succeeded | failed | canceled | rejected
    stripe_refund_id TEXT UNIQUE,
    failure_reason   TEXT,
    called_at        TEXT,                    -- set just before the Stripe call
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    UNIQUE (case_id, payment_ref, attempt)
);

CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    case_id   INTEGER,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX audit_case ON audit_log (case_id);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

CREATE TABLE state (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
