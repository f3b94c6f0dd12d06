-- Fewer index pages a webhook's insert writes (issue 10: intake at the floor). Each index a
-- row enters is one more page in the commit that the 200 waits for (at synchronous=FULL,
-- one more page synced to disk):
-- - the events not processed yet had two indexes, one of them over every row ever received
--   (webhook_events_waiting); the partial one alone answers every query (queued, retrying,
--   failed, counts), so the full one goes;
-- - the leases' look-ups (an instance's own queued events, the holders of unexpired leases)
--   are only ever of events not processed yet: the lease columns join that partial index
--   instead of an index of their own over every row;
-- - the failed events (listed oldest first for a person to retry) have an index of their
--   own, which an event enters only when it fails, never at its insert;
-- - the audit chain's look-up by case is only ever of a case's rows: the rows of no case
--   (every webhook.received among them) stay out of its index.
DROP INDEX webhook_events_waiting;
DROP INDEX webhook_events_claims;
DROP INDEX webhook_events_open;
CREATE INDEX webhook_events_open ON webhook_events (failed_at, next_at, claimed_by, lease_until)
    WHERE processed_at IS NULL;
CREATE INDEX webhook_events_failed ON webhook_events (id)
    WHERE processed_at IS NULL AND failed_at IS NOT NULL;
DROP INDEX audit_case;
CREATE INDEX audit_case ON audit_log (case_id) WHERE case_id IS NOT NULL;
