-- A whole departure cancelled and refunded at once (`/refund departure`): the run, planned
-- when the card is posted and started by one click, and each booking's step, so a restart
-- continues the run where it stopped (services/refunds/departure.py). Money is in minor
-- units of the run's one currency.
CREATE TABLE departure_runs (
    id                   INTEGER PRIMARY KEY,
    item                 TEXT NOT NULL,          -- the product's sku or item id as asked for
    starts_at            TEXT NOT NULL,          -- the departure, UTC ISO-8601
    waiver               TEXT,
    currency             TEXT NOT NULL,
    total                INTEGER NOT NULL,       -- to refund, with the waiver when there is one
    total_without_waiver INTEGER NOT NULL,
    state                TEXT NOT NULL CHECK (state IN ('planned', 'running', 'done')),
    requested_by         TEXT NOT NULL,
    started_by           TEXT,
    cancelled_at         TEXT,                   -- the click: every case is quoted at it
    channel              TEXT,                   -- where its card is
    ts                   TEXT,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);
CREATE INDEX departure_runs_state ON departure_runs (state);

CREATE TABLE departure_bookings (
    run_id                INTEGER NOT NULL REFERENCES departure_runs (id),
    booking_code          TEXT NOT NULL,         -- the booking's key (upper-case code)
    booking_id            TEXT NOT NULL,
    position              INTEGER NOT NULL,
    amount                INTEGER NOT NULL,      -- planned refund, with the waiver
    amount_without_waiver INTEGER NOT NULL,
    attention             TEXT,                  -- why a person is needed anyway, else NULL
    step                  TEXT NOT NULL CHECK (step IN ('waiting', 'cancelled', 'done',
                                                        'failed', 'person', 'skipped')),
    case_id               INTEGER REFERENCES cases (id),
    error                 TEXT,                  -- a failure's class and safe message
    updated_at            TEXT NOT NULL,
    PRIMARY KEY (run_id, booking_code)
);
-- a Checkfront webhook about a booking a running departure is cancelling is left to the run
CREATE INDEX departure_bookings_code ON departure_bookings (booking_code);
