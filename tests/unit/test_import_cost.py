"""Start-up stays light: `--help` and `events` never load SQLAlchemy, sqlmodel or an LLM SDK.

Claude Code waits on hook commands and users wait on `--help`; heavy imports must stay
behind the commands that need them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("sqlalchemy", "sqlmodel", "anthropic", "openai", "psycopg", "esdbclient", "grpc",
         "rich")

PROBE = """
import sys, json
from orchestrator.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)), file=sys.stderr)
"""


def loaded_modules(argv: list[str], cwd: Path) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], cwd=cwd,
                          capture_output=True, text=True, timeout=60)
    last = proc.stderr.strip().splitlines()[-1]
    return set(json.loads(last))


def test_help_imports_nothing_heavy(tmp_path: Path) -> None:
    mods = loaded_modules(["--help"], tmp_path)
    assert "click" in mods
    assert not mods & {*HEAVY, "pydantic", "yaml", "aiosqlite", "structlog"}


def test_events_commands_import_no_sql_orm_or_sdk(tmp_path: Path) -> None:
    mods = loaded_modules(["--store", "memory://", "events", "query", "--type", "tool.*"],
                          tmp_path)
    assert "pydantic" in mods  # proves the command really ran
    assert not mods & set(HEAVY)
    mods = loaded_modules(["events", "streams"], tmp_path)  # default store: SQLite
    assert "aiosqlite" in mods or "sqlite3" in mods
    assert not mods & set(HEAVY)
