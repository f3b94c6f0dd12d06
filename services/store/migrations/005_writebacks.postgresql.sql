-- Checkfront write-backs that failed after the money moved, kept and retried until Checkfront
-- takes them (one row per case; done_at set once it did).

CREATE TABLE checkfront_writebacks (
    case_id     BIGINT PRIMARY KEY REFERENCES cases (id),
    actor       TEXT NOT NULL,               -- who the note names when nobody decided
    manual      BIGINT NOT NULL,            -- minor units still to refund by hand
    attempts    BIGINT NOT NULL,
    last_error  TEXT NOT NULL,
    next_at     TEXT NOT NULL,               -- UTC ISO-8601; a claimed retry moves it on
    done_at     TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX checkfront_writebacks_due ON checkfront_writebacks (done_at, next_at);
