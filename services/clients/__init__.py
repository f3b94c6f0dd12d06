"""Clients of the outside systems, and the only code that speaks to them.

Checkfront (API 3.0): `checkfront` is the HTTP client, `checkfront_bodies` Checkfront's
vocabulary (its status codes; its booking and transaction bodies read into the snapshot
dict) and `checkfront_errors` holds its failures.

Stripe: `stripe_gateway` makes the calls (refunds, disputes, payments) with their retries,
`stripe_money` holds Stripe's amount rules, `stripe_records` reads Stripe's objects,
`stripe_errors` its failures and `stripe_events` its webhook signatures. Every module that
imports `stripe` lives here.
"""
