"""Microsoft Teams: the second chat platform beside Slack, over the same domain (`services`)."""
