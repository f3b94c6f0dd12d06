"""Slack listeners: buttons, modals, slash commands, the Home tab and the dispute cards."""
