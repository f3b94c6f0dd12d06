"""Quoting: the booking snapshot, the policy book, the pure quote engine and risk flags."""
