"""The bot's assembly: settings, the app and its workers, the scheduler, the Slack runtime
(`bot.slack`, with its Block Kit in `bot.slack.ui`) and the command line (`bot.cli`)."""
