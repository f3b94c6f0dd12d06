-- Involuntary cancellations: a case opened from a Checkfront cancellation that the policy
-- file's waiver rules matched (a custom status, a booking form field's value, a cancellation
-- reason) carries the waiver it was given and where it came from, in words written from the
-- rule ("Checkfront status WTHR"), never the customer's text.
ALTER TABLE cases ADD COLUMN involuntary INTEGER NOT NULL DEFAULT 0 CHECK (involuntary IN (0, 1));
ALTER TABLE cases ADD COLUMN waiver_source TEXT;
