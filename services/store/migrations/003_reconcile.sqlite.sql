-- Daily reconciliation runs and their discrepancies; anomalies the detector has seen.

CREATE TABLE recon_runs (
    day           TEXT PRIMARY KEY,           -- business day, YYYY-MM-DD in `tz`
    tz            TEXT NOT NULL,
    window_start  TEXT NOT NULL,              -- UTC ISO-8601
    window_end    TEXT NOT NULL,
    ran_at        TEXT NOT NULL,              -- last run (a re-run replaces the result)
    first_ran_at  TEXT NOT NULL,
    runs          INTEGER NOT NULL DEFAULT 1,
    stripe_count  INTEGER NOT NULL,
    counts        TEXT NOT NULL,              -- JSON: kind -> number
    totals        TEXT NOT NULL,              -- JSON: currency -> {figure -> minor units}
    notes         TEXT NOT NULL               -- JSON list of plain-language remarks
);

CREATE TABLE recon_discrepancies (
    id            INTEGER PRIMARY KEY,
    key           TEXT NOT NULL UNIQUE,       -- kind plus what it is about, stable across runs
    day           TEXT NOT NULL,              -- business day of the run that first found it
    kind          TEXT NOT NULL,
    error         INTEGER NOT NULL,           -- 0: informational (e.g. a small external refund)
    booking_code  TEXT,
    amount        INTEGER,                    -- minor units of `currency`
    currency      TEXT,
    refund_id     TEXT,
    execution_id  INTEGER,
    case_id       INTEGER,
    payment_ref   TEXT,
    detail        TEXT NOT NULL,              -- what is wrong, in plain words
    first_seen    TEXT NOT NULL,
    last_seen     TEXT NOT NULL,
    last_run_day  TEXT NOT NULL,
    resolved_at   TEXT,
    resolved_by   TEXT                        -- a run day (reconcile) or a person
);
CREATE INDEX recon_discrepancies_day ON recon_discrepancies (day);
CREATE INDEX recon_discrepancies_open ON recon_discrepancies (resolved_at, error);

CREATE TABLE anomalies (
    id            INTEGER PRIMARY KEY,
    key           TEXT NOT NULL UNIQUE,       -- kind plus subject and hour, one row per episode
    kind          TEXT NOT NULL,
    blocking      INTEGER NOT NULL,
    reason        TEXT NOT NULL,
    numbers       TEXT NOT NULL,              -- JSON
    first_seen    TEXT NOT NULL,
    last_seen     TEXT NOT NULL
);
CREATE INDEX anomalies_seen ON anomalies (last_seen);

CREATE INDEX executions_created ON executions (created_at);
CREATE INDEX executions_payment ON executions (payment_ref);
CREATE INDEX booking_payments_transaction ON booking_payments (transaction_id);
CREATE INDEX cases_created ON cases (created_at);
CREATE INDEX cases_customer ON cases (customer_hash, created_at);
