"""Clients of the outside systems: Checkfront's API 3.0 and the Stripe gateway."""
