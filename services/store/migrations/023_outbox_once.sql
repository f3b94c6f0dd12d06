-- A post that must go out once however often its work runs: the day's digest (and its chart
-- and journal), the weekly review. Its row carries a key of what it is ("digest:2026-12-01");
-- queuing it again is a no-op (INSERT ... ON CONFLICT DO NOTHING). The daily run may run
-- again for a day: its leader died after queuing the digest but before recording the day
-- reconciled, and the instance that took the run over reconciles that day again. Rows
-- without a key (most posts) are never equal to one another (NULLs are distinct in a unique
-- index in SQLite and PostgreSQL alike).
ALTER TABLE slack_outbox ADD COLUMN once_key TEXT;
CREATE UNIQUE INDEX slack_outbox_once ON slack_outbox (once_key);
ALTER TABLE teams_outbox ADD COLUMN once_key TEXT;
CREATE UNIQUE INDEX teams_outbox_once ON teams_outbox (once_key);
-- A Slack post may have reached Slack although no answer came back (a lost link, a 5xx after
-- Slack posted it, a crash before the row was marked sent): `sending_at` is set before each
-- attempt, and a row that has it is looked up in the channel's history (by the post's id in the
-- message's metadata) before it is posted again.
ALTER TABLE slack_outbox ADD COLUMN sending_at TEXT;
