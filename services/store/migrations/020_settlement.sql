-- Settlement-level reconciliation: each refund's Stripe balance transaction (fee, net), the
-- processing fee Stripe kept on its charge, and the automatic payout that carried it; and one
-- row of figures per business day and currency for the digest.
CREATE TABLE settlement_refunds (
    refund_id TEXT PRIMARY KEY,
    day TEXT NOT NULL,               -- the business day of the refund
    txn_id TEXT NOT NULL,            -- its balance transaction
    currency TEXT NOT NULL,
    amount BIGINT NOT NULL,          -- refunded, minor units (positive)
    fee BIGINT NOT NULL,             -- fee on the refund's own transaction (usually 0)
    net BIGINT NOT NULL,             -- the transaction's net (negative)
    charge_id TEXT,
    charge_fee BIGINT,               -- the charge's processing fee, which Stripe keeps
    refund_status TEXT,
    created_at TEXT NOT NULL,        -- ISO-8601 UTC
    payout_id TEXT,                  -- the automatic payout that carried it, once seen
    payout_arrival TEXT
);
CREATE INDEX settlement_refunds_unpaid ON settlement_refunds (payout_id, created_at);
CREATE INDEX settlement_refunds_charge ON settlement_refunds (charge_id, day);

CREATE TABLE settlement_days (
    day TEXT NOT NULL,
    currency TEXT NOT NULL,
    refunds INTEGER NOT NULL,            -- refund transactions of the day
    refunded BIGINT NOT NULL,            -- their amounts, minor units
    fees_kept BIGINT NOT NULL,           -- processing fees of the charges first refunded that day
    refund_fees BIGINT NOT NULL,         -- fees on the refunds' own transactions
    in_payout INTEGER NOT NULL,          -- the day's refunds seen in a payout so far
    missing_from_payout INTEGER NOT NULL, -- refunds of any day past the delay, in no payout
    missing_amount BIGINT NOT NULL,
    failures INTEGER NOT NULL,           -- refund_failure reversals of the day
    failures_amount BIGINT NOT NULL,
    unmatched_failures INTEGER NOT NULL, -- ... not matched to a failed refund in our ledger
    PRIMARY KEY (day, currency)
);
