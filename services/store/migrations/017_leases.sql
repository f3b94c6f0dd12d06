-- Several instances on one store (issue 14): who works a queued row, and until when.
-- A work-queue row is claimed by compare-and-set: claimed_by (the instance id) and
-- lease_until (UTC ISO-8601); a row whose lease has passed is free to claim again, so the
-- work of an instance killed -9 is taken up by another once its lease expires.
ALTER TABLE webhook_events ADD COLUMN claimed_by TEXT;
ALTER TABLE webhook_events ADD COLUMN lease_until TEXT;
ALTER TABLE checkfront_writebacks ADD COLUMN claimed_by TEXT;
ALTER TABLE checkfront_writebacks ADD COLUMN lease_until TEXT;
ALTER TABLE customer_messages ADD COLUMN claimed_by TEXT;
ALTER TABLE customer_messages ADD COLUMN lease_until TEXT;
CREATE INDEX webhook_events_claims ON webhook_events (claimed_by, lease_until);
-- Named leases: a scheduled job's run for one slot ("job:<job>:<slot>", done_at set once it
-- ran, so it runs once per slot across instances) and a Slack channel's sender
-- ("channel:<id>", one sender a channel at a time).
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    claimed_by TEXT NOT NULL,
    lease_until TEXT NOT NULL,
    taken_at TEXT NOT NULL,
    done_at TEXT
);
CREATE INDEX leases_done ON leases (done_at, taken_at);
-- A case being executed is leased to the instance executing it (renewed while it runs), so
-- another instance resumes it only once that instance is gone.
ALTER TABLE cases ADD COLUMN claimed_by TEXT;
ALTER TABLE cases ADD COLUMN lease_until TEXT;
