-- Stripe events beyond refunds: disputes and failed payments, each with its Slack card.

CREATE TABLE payment_issues (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL,            -- dispute | payment_failed
    stripe_id       TEXT NOT NULL,            -- dp_... (dispute) or pi_... (failed payment)
    event_id        TEXT NOT NULL,            -- the Stripe event that opened it
    payment_intent  TEXT,
    charge          TEXT,
    booking_code    TEXT,
    booking_id      TEXT,
    case_id         INTEGER REFERENCES cases (id),
    amount          INTEGER NOT NULL,         -- project minor units of `currency`
    currency        TEXT NOT NULL,
    reason          TEXT,                     -- dispute reason, or the payment's failure
    due_by          TEXT,                     -- evidence deadline (UTC ISO-8601), disputes only
    detail          TEXT NOT NULL,            -- JSON: evidence pack, last payment error, ...
    state           TEXT NOT NULL,            -- open | working | submitted | accepted | paid | cancelled
    stripe_status   TEXT,                     -- the dispute's or payment's status at Stripe
    outcome         TEXT,                     -- last action's result, in plain words
    acted_by        TEXT,
    acted_at        TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    link_url        TEXT,                     -- payment link sent for a failed payment
    slack_channel   TEXT,                     -- the card, once known
    slack_ts        TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (kind, stripe_id)
);
CREATE INDEX payment_issues_booking ON payment_issues (booking_code);
CREATE INDEX payment_issues_state ON payment_issues (state);
