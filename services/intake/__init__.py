"""Intake: received webhook events, stored once, and the routing of each event type."""
