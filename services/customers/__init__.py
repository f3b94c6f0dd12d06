"""The customer is told: a message for every case that closes, drafted from the case, its quote,
the payment's card and the booking's language, and sent by email exactly once.

- `outbox`: the `customer_messages` rows (one per case and outcome, written by the transaction
  that closes the case) and the SQL that moves them on;
- `drafts`: outcome -> facts -> template (`templates/customer/`, Jinja2, text and HTML, the
  booking's language when a template exists, else English) with amounts from `babel`;
- `sending`: the sender's pass (look at new rows under `CUSTOMER_MESSAGES`, send what is due
  through the injected `Mailer`, retry with backoff, tell the notifier when retries run out).
"""
