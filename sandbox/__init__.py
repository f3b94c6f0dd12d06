"""Local stand-ins for Checkfront, Stripe and Slack, bound to 127.0.0.1.

The demo and the test suite share them: each stand-in is a real aiohttp server that
follows the shapes and documented semantics of the service it replaces, keeps its
state in plain Python objects the caller can inspect, and can inject faults.
"""
