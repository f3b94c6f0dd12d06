"""HTTP handlers: the Checkfront and Stripe webhooks and the app's shared HTTP context."""
