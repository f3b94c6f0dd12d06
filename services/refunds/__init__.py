"""Refund cases: their transitions, opening and deciding them, execution through Stripe,
the executions ledger, the Checkfront write-back and the automation switch.
"""
