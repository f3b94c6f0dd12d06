"""The store's SQL is the same on both engines: no SQL text in the bot's code calls a function
or uses a form only SQLite has, and PostgreSQL keeps no same-named stand-ins for them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import asyncpg

from tests import pg_cluster

REPO = Path(__file__).resolve().parent.parent
SQLITE_ONLY = re.compile(
    r"\b(json_extract|json_set|json_insert|json_replace|json_remove|json_each|json_tree|"
    r"json_object|json_array|json_group_array|json_group_object|json|instr|julianday|"
    r"strftime|datetime|unixepoch|group_concat|ifnull|iif|typeof|printf|randomblob|"
    r"last_insert_rowid|changes)\s*\(|\bINSERT\s+OR\b|\bREPLACE\s+INTO\b|\bGLOB\b|\browid\b",
    re.IGNORECASE)
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|WHERE|VALUES)\b")
# the SQLite engine's own machinery, which only ever runs on SQLite
SQLITE_FILES = {"services/store/db.py", "services/store/writer.py", "services/store/backup.py"}


def sql_texts(path: Path) -> list[tuple[int, str]]:
    """Each string in the file that reads as SQL (an f-string's literal parts joined)."""
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)
             for v in node.values}
    for node in ast.walk(tree):
        if id(node) in parts:
            continue
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values
                           if isinstance(v, ast.Constant) and isinstance(v.value, str))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        if SQL.search(text) and not text.lstrip().startswith(("The ", "A ", "An ")):
            found.append((node.lineno, text))
    return found


def test_no_sql_in_the_code_uses_a_sqlite_only_function_or_form() -> None:
    offending = []
    for folder in ("services", "bot", "handlers"):
        for path in sorted((REPO / folder).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            if relative in SQLITE_FILES:
                continue
            for line, text in sql_texts(path):
                if (match := SQLITE_ONLY.search(text)) is not None:
                    offending.append(f"{relative}:{line}: {match.group(0)!r} in {text[:80]!r}")
    assert not offending, "\n".join(offending)


def test_the_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('Q = "SELECT json_extract(detail, \'$.a\') FROM t WHERE id = ?"\n'
                      'R = f"INSERT OR IGNORE INTO t VALUES ({1})"\n'
                      'S = "SELECT id FROM t WHERE a = ?"\n')
    hits = [text for _, text in sql_texts(sample) if SQLITE_ONLY.search(text)]
    assert len(hits) == 2


async def test_postgresql_keeps_no_stand_ins_for_sqlite_functions(pg: pg_cluster.Cluster
                                                                   ) -> None:
    conn = await asyncpg.connect(pg.url_of(pg_cluster.TEMPLATE))
    try:
        names = await conn.fetch(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public' AND p.proname = ANY($1::text[])",
            ["json_extract", "instr", "json_each"])
    finally:
        await conn.close()
    assert [r["proname"] for r in names] == []
