"""`python -m bot`: the command line (`bot.cli.main`)."""

from bot.cli.main import main

raise SystemExit(main())
