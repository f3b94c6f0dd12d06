-- Webhook events that could not be applied yet: an outage (Checkfront or Stripe unavailable)
-- keeps the event for a retry at next_at; any other error makes it a dead letter (failed_at),
-- kept, counted and retried only by a person. A processed event has processed_at set.

ALTER TABLE webhook_events ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;  -- failed tries
ALTER TABLE webhook_events ADD COLUMN last_error TEXT;      -- class and a safe message
ALTER TABLE webhook_events ADD COLUMN next_at TEXT;         -- UTC ISO-8601; a claimed retry moves it on
ALTER TABLE webhook_events ADD COLUMN retrying_since TEXT;  -- first failure of this round of retries
ALTER TABLE webhook_events ADD COLUMN failed_at TEXT;       -- a dead letter, or an outage past the bound
CREATE INDEX webhook_events_waiting ON webhook_events (processed_at, failed_at, next_at);
