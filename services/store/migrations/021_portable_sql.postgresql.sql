-- The bot's SQL no longer calls SQLite's JSON and position functions: the callers read a
-- row's JSON in Python (or test plain columns), so the same statements run on both engines.
-- The same-named stand-ins the first PostgreSQL migrations defined go, so nothing relies on
-- them.
DROP FUNCTION IF EXISTS json_extract(TEXT, TEXT);
DROP FUNCTION IF EXISTS instr(TEXT, TEXT);
DROP FUNCTION IF EXISTS json_each(TEXT);
