"""The store: one SQLite file (connection, migrations) and the audit chain."""
