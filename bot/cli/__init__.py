"""The command line: its commands, text rendering for the terminal, and the demo."""
