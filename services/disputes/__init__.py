"""Disputes and failed payments: the issues, the holds they put on refunds, the evidence."""
