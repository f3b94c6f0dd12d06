"""The Slack runtime: the Bolt app, the paced outbox, the notifier and the digest poster."""
