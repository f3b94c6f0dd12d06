"""Transport to service calls and back: HTTP webhooks (`handlers.http`) and Slack listeners
(`handlers.slack`). Handlers import `services` and, for chat rendering, `bot.slack.ui` only."""
