"""Disputes and failed payments: issue records, Stripe's events, people's actions, holds, evidence.

`issues` owns the `payment_issues` table; `stripe_events` turns Stripe's events into issues;
`actions` is what people do about them; `holds` is how an open dispute stops a refund;
`evidence` assembles a dispute's evidence pack from our own records.
"""
