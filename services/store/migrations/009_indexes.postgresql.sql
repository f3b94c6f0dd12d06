-- Indexes so that every per-request query (a webhook, a Slack click, a case's execution) and
-- the health check's counts are index look-ups whatever the store's size, and the columns the
-- value-outlier risk flag reads, so it no longer decodes 200 stored quotes per case.

-- a case's decisions (its latest one: the report, the approval answer, the card)
CREATE INDEX decisions_case ON decisions (case_id);

-- a booking named by its code or its Checkfront id (the key has its index since 006)
CREATE INDEX cases_booking_code ON cases (booking_code);
CREATE INDEX cases_booking_id ON cases (booking_id);

-- "was this very post queued before": the outbox's de-duplication, by case
CREATE INDEX slack_outbox_case ON slack_outbox (case_id, kind);

-- the disputes on a payment (a hold on a refund, a risk flag), by either of its ids
CREATE INDEX payment_issues_intent ON payment_issues (payment_intent);
CREATE INDEX payment_issues_charge ON payment_issues (charge);

-- The events not processed yet, and only those: the health check counts them and the worker
-- reads them, however many processed ones the table keeps.
CREATE INDEX webhook_events_open ON webhook_events (failed_at, next_at)
    WHERE processed_at IS NULL;

-- What the value-outlier flag needs of a quote, written with it: the currency of its case,
-- its order total in minor units and the skus of its lines (a JSON array). NULL columns (a
-- quote this migration could not read exactly) are read from the quote's JSON instead.
ALTER TABLE quotes ADD COLUMN currency TEXT;
ALTER TABLE quotes ADD COLUMN order_total BIGINT;
ALTER TABLE quotes ADD COLUMN skus TEXT;

-- The backfill of the SQLite variant reads quotes stored before this migration; on
-- PostgreSQL every store starts at the current schema (a new one, or one filled by `store copy`
-- after all migrations ran), so there is nothing stored to backfill: new quotes are written
-- with these columns (`cases.add_quote`).

-- SQLite's json_each over a JSON array kept as text (the skus), as the value-outlier query
-- reads it (`cases.recent_order_totals`): each element's JSON type and its value as text
CREATE FUNCTION json_each(document TEXT) RETURNS TABLE (type TEXT, value TEXT)
    LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE jsonb_typeof(e) WHEN 'string' THEN 'text' ELSE jsonb_typeof(e) END,
           e #>> '{}'
    FROM jsonb_array_elements(document::jsonb) AS e
$$;

-- the most recent quotes of a currency, newest first
CREATE INDEX quotes_currency ON quotes (currency, id);

-- a quote written without its case's currency (by anything but `cases`) takes it from its case
CREATE FUNCTION quotes_case_currency() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.currency IS NULL THEN
        NEW.currency := (SELECT c.currency FROM cases c WHERE c.id = NEW.case_id);
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER quotes_case_currency BEFORE INSERT ON quotes
    FOR EACH ROW EXECUTE FUNCTION quotes_case_currency();
