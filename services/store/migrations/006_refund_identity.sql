-- One booking, one identity: a case is keyed on its booking as Checkfront's API returns it
-- (the booking code, upper case), never on the id a webhook body may or may not carry.
-- Existing cases take the key from their stored code, which every delivery carried.

ALTER TABLE cases ADD COLUMN booking_key TEXT;

UPDATE cases SET booking_key = UPPER(TRIM(booking_code));

-- A booking that already has two open cases (the old rule keyed on the body's id) keeps the
-- key on its oldest open case; the later ones stay unkeyed for a person to close. The open-case
-- look-ups still find them by code, and the ledger guard counts their refunds.
UPDATE cases SET booking_key = NULL
WHERE status NOT IN ('refunded', 'partially_refunded', 'denied', 'skipped')
  AND EXISTS (SELECT 1 FROM cases AS older
              WHERE older.booking_key = cases.booking_key AND older.id < cases.id
                AND older.status NOT IN ('refunded', 'partially_refunded', 'denied', 'skipped'));

DROP INDEX cases_one_open_per_booking;
-- one open case per booking; closed cases stay for history
CREATE UNIQUE INDEX cases_one_open_per_booking ON cases (booking_key)
    WHERE status NOT IN ('refunded', 'partially_refunded', 'denied', 'skipped');
CREATE INDEX cases_booking_key ON cases (booking_key);
