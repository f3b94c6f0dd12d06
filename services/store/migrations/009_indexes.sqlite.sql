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
ALTER TABLE quotes ADD COLUMN order_total INTEGER;
ALTER TABLE quotes ADD COLUMN skus TEXT;

UPDATE quotes SET currency = (SELECT c.currency FROM cases c WHERE c.id = quotes.case_id);

UPDATE quotes SET skus = (SELECT json_group_array(json_extract(line.value, '$.sku'))
                          FROM json_each(quotes.quote, '$.lines') AS line)
WHERE json_valid(quotes.quote) AND json_type(quotes.quote, '$.lines') = 'array';

-- Stored totals are written with the currency's exponent ("125.00" USD, "1250" JPY, "1.250"
-- KWD), so their digits without the point are the minor units; any other text stays NULL.
CREATE TEMP TABLE quote_totals (id INTEGER PRIMARY KEY, total, places, digits);
INSERT INTO quote_totals (id, total, places, digits)
SELECT id, total, places,
       CASE WHEN total GLOB '-*' THEN SUBSTR(total, 2) ELSE total END AS digits
FROM (SELECT q.id, json_extract(q.quote, '$.order_total') AS total,
             CASE WHEN UPPER(TRIM(q.currency)) IN ('BIF', 'CLP', 'DJF', 'GNF', 'ISK', 'JPY',
                                                   'KMF', 'KRW', 'MGA', 'PYG', 'RWF', 'UGX',
                                                   'UYI', 'VND', 'VUV', 'XAF', 'XOF', 'XPF')
                  THEN 0
                  WHEN UPPER(TRIM(q.currency)) IN ('BHD', 'IQD', 'JOD', 'KWD', 'LYD', 'OMR',
                                                   'TND')
                  THEN 3
                  ELSE 2 END AS places
      FROM quotes q WHERE json_valid(q.quote));

UPDATE quotes SET order_total = (
    SELECT CAST(REPLACE(t.total, '.', '') AS INTEGER) FROM quote_totals t
    WHERE t.id = quotes.id AND typeof(t.total) = 'text' AND skus IS NOT NULL
      AND t.digits GLOB '[0-9]*' AND t.digits NOT GLOB '*[^0-9.]*'
      AND t.digits NOT GLOB '*.*.*' AND LENGTH(t.digits) <= 18
      AND CASE t.places WHEN 0 THEN INSTR(t.digits, '.') = 0
                        ELSE INSTR(t.digits, '.') = LENGTH(t.digits) - t.places END);

DROP TABLE quote_totals;

-- the most recent quotes of a currency, newest first
CREATE INDEX quotes_currency ON quotes (currency, id);

-- a quote written without its case's currency (by anything but `cases`) takes it from its case
CREATE TRIGGER quotes_case_currency AFTER INSERT ON quotes WHEN NEW.currency IS NULL
BEGIN
    UPDATE quotes SET currency = (SELECT c.currency FROM cases c WHERE c.id = NEW.case_id)
    WHERE id = NEW.id;
END;
