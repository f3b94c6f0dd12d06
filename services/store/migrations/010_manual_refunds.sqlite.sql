-- Refunds made by hand (cash, bank transfer, a card terminal) for the part of a refund that
-- did not go through Stripe, each recorded by an approver with the "Mark refunded" button.
-- One per case: recording it closes the case (status refunded_by_hand). The daily
-- reconciliation counts them as manual refunds, never as refunds missing in Stripe.
CREATE TABLE manual_refunds (
    id           INTEGER PRIMARY KEY,
    case_id      INTEGER NOT NULL UNIQUE REFERENCES cases (id),
    amount       INTEGER NOT NULL CHECK (amount > 0),   -- minor units of `currency`
    currency     TEXT NOT NULL,
    method       TEXT NOT NULL,                         -- bank_transfer | cash | card_terminal | cheque | other
    reference    TEXT,                                  -- the payer's reference, scrubbed of contact data
    recorded_by  TEXT NOT NULL,
    recorded_at  TEXT NOT NULL
);
CREATE INDEX manual_refunds_recorded ON manual_refunds (recorded_at);

-- a case refunded by hand is closed: the booking may have a new case
DROP INDEX cases_one_open_per_booking;
CREATE UNIQUE INDEX cases_one_open_per_booking ON cases (booking_key)
    WHERE status NOT IN ('refunded', 'partially_refunded', 'refunded_by_hand', 'denied',
                         'skipped');
