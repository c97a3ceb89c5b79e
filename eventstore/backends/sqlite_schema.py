"""The SQLite event store's file format: schema, pragmas, and opening a file safely.

One ``events`` table, ``position INTEGER PRIMARY KEY AUTOINCREMENT``:

- The position is the rowid, so every secondary index is implicitly ``(column, position)``.
  That is why single-column indexes on ``correlation_id``, ``type`` and ``actor`` serve
  "first page of everything with this value after cursor N" as one B-tree seek and a
  short in-order walk, with no sort, however large the table grows.
- AUTOINCREMENT means positions are never reused, even after the newest rows are
  deleted, and ``sqlite_sequence`` remembers the highest position ever assigned:
  ``head_position`` reads it there, so ``verify`` notices events cut off the end.
- ``data`` and ``metadata`` hold the canonical JSON text that ``eventstore.append``
  produced and hashed, stored verbatim so the hash recomputes byte for byte.
- Triggers refuse UPDATE always, and DELETE unless a row is present in
  ``retention_guard``; the retention transaction inserts that row, deletes the expired
  streams and removes the row again before it commits, so the guard is never visible
  outside it. (This stops accidents, not an attacker with the file: ``verify`` is what
  detects tampering.)

``PRAGMA application_id`` marks the file as ours and ``PRAGMA user_version`` is the
schema version; a newer or foreign schema is refused with a message naming the file.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from eventstore.errors import ConfigError, StoreCorrupted, StoreError, StoreUnavailable

#: "ORTL": marks a SQLite file as an orchestrail event store.
APPLICATION_ID = 0x4F52544C
SCHEMA_VERSION = 1
SQLITE_HEADER = b"SQLite format 3\x00"

#: Columns in the order every SELECT in the backend returns them.
COLUMNS = (
    "position, id, stream, version, type, actor, correlation_id, causation_id, "
    "occurred_at, recorded_at, data, metadata, prev_hash, hash"
)

INSERT_SQL = (
    "INSERT INTO events (position, id, stream, version, type, actor, correlation_id, "
    "causation_id, occurred_at, recorded_at, data, metadata, prev_hash, hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

SCHEMA = f"""
CREATE TABLE events (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL,
    stream         TEXT NOT NULL,
    version        INTEGER NOT NULL,
    type           TEXT NOT NULL,
    actor          TEXT NOT NULL,
    correlation_id TEXT,
    causation_id   TEXT,
    occurred_at    TEXT NOT NULL,
    recorded_at    TEXT NOT NULL,
    data           TEXT NOT NULL,
    metadata       TEXT NOT NULL,
    prev_hash      TEXT,
    hash           TEXT NOT NULL
);
CREATE UNIQUE INDEX events_id ON events (id);
CREATE UNIQUE INDEX events_stream_version ON events (stream, version);
CREATE INDEX events_correlation ON events (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX events_type ON events (type);
CREATE INDEX events_actor ON events (actor);
CREATE INDEX events_occurred ON events (occurred_at);
CREATE TABLE retention_guard (token TEXT PRIMARY KEY);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'orchestrail events are append-only: UPDATE refused');
END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
WHEN NOT EXISTS (SELECT 1 FROM retention_guard)
BEGIN
    SELECT RAISE(ABORT, 'orchestrail events are append-only: DELETE refused (retention only)');
END;
PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {SCHEMA_VERSION};
"""

#: The triggers alone, to put them back after a test tampered with the file.
TRIGGERS = SCHEMA[SCHEMA.index("CREATE TRIGGER"): SCHEMA.index("PRAGMA application_id")]

SYNCHRONOUS = ("full", "normal", "extra")
DEFAULT_SYNCHRONOUS = "full"
DEFAULT_BUSY_TIMEOUT_MS = 5_000


class Settings:
    """Per-connection settings from the URL's query string (``?synchronous=normal``)."""

    def __init__(self, path: Path, params: dict[str, str]) -> None:
        unknown = set(params) - {"synchronous", "busy_timeout"}
        if unknown:
            raise ConfigError(
                f"SQLite store {path}: unknown URL parameter(s) {', '.join(sorted(unknown))}; "
                "allowed: synchronous=full|normal|extra, busy_timeout=<milliseconds>"
            )
        self.synchronous = params.get("synchronous", DEFAULT_SYNCHRONOUS).lower()
        if self.synchronous not in SYNCHRONOUS:
            raise ConfigError(
                f"SQLite store {path}: synchronous={params['synchronous']!r} is not allowed; "
                "use full (default, every commit survives power loss) or normal or extra"
            )
        raw = params.get("busy_timeout", str(DEFAULT_BUSY_TIMEOUT_MS))
        if not raw.isdigit():
            raise ConfigError(
                f"SQLite store {path}: busy_timeout={raw!r} must be a whole number of milliseconds"
            )
        self.busy_timeout_ms = int(raw)

    @property
    def busy_timeout_s(self) -> float:
        return self.busy_timeout_ms / 1000.0


def describe_error(exc: sqlite3.Error, path: Path, doing: str, settings: Settings | None = None
                   ) -> StoreError:
    """Turn a sqlite3 error into one clear line naming the file (and what we were doing)."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc)
    low = text.lower()
    if primary in (5, 6) or "locked" in low or "busy" in low:
        waited = f" for {settings.busy_timeout_s:g} s" if settings else ""
        return StoreUnavailable(
            f"SQLite store {path} is locked by another connection (waited{waited} while "
            f"{doing}); retry, or raise ?busy_timeout=<ms> in the store URL"
        )
    if primary == 8 or "readonly" in low or "read-only" in low:
        return StoreUnavailable(
            f"SQLite store {path} is read-only ({text}) while {doing}: the file and its "
            "directory must be writable (WAL keeps -wal and -shm files next to it)"
        )
    if primary == 26 or "not a database" in low:
        if _has_sqlite_header(path):
            return StoreCorrupted(f"SQLite store {path} is corrupted ({text}) while {doing}")
        return StoreUnavailable(f"{path} is not a SQLite database ({text})")
    if primary == 11 or "malformed" in low or "corrupt" in low:
        return StoreCorrupted(
            f"SQLite store {path} is corrupted ({text}) while {doing}; restore it from a backup"
        )
    if primary in (3, 14) or "unable to open" in low:
        return StoreUnavailable(
            f"cannot open SQLite store {path} ({text}): check that the directory exists "
            "and is readable and writable"
        )
    return StoreUnavailable(f"SQLite store {path}: {text} while {doing}")


def _has_sqlite_header(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(16) == SQLITE_HEADER
    except OSError:
        return False


def check_path(path: Path, *, create: bool) -> bool:
    """Check the path before SQLite touches it; return True when the file already exists.

    SQLite's own messages for these cases are vague ("unable to open database file"), and
    some of them would create an empty file as a side effect, so the common mistakes are
    caught here first.
    """
    if path.is_dir():
        raise StoreUnavailable(f"SQLite store path {path} is a directory, not a database file")
    exists = path.exists()
    if not exists:
        if not create:
            raise StoreUnavailable(
                f"SQLite store {path} does not exist (nothing has been recorded there yet)"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot create the directory for SQLite store {path}: {exc.strerror or exc}"
            ) from None
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise StoreUnavailable(
                f"cannot create SQLite store {path}: directory {path.parent} is read-only"
            )
        return False
    try:
        with open(path, "rb") as fh:
            header = fh.read(16)
    except OSError as exc:
        raise StoreUnavailable(
            f"cannot read SQLite store {path}: {exc.strerror or exc}"
        ) from None
    if header and header != SQLITE_HEADER:
        raise StoreUnavailable(
            f"{path} is not a SQLite database (it does not start with the SQLite header); "
            "point the store URL at an orchestrail events.db"
        )
    if not os.access(path, os.W_OK):
        raise StoreUnavailable(
            f"SQLite store {path} is read-only: the event store needs write access to the file"
        )
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise StoreUnavailable(
            f"SQLite store {path}: directory {path.parent} is read-only (WAL needs to create "
            f"{path.name}-wal and {path.name}-shm next to the file)"
        )
    return True


def connect(path: Path, settings: Settings) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN ourselves) with our pragmas."""
    conn = sqlite3.connect(
        str(path),
        timeout=settings.busy_timeout_s,
        isolation_level=None,
        check_same_thread=False,
        cached_statements=64,
    )
    try:
        apply_pragmas(conn, settings)
    except BaseException:
        conn.close()
        raise
    return conn


def apply_pragmas(conn: sqlite3.Connection, settings: Settings) -> None:
    conn.execute(f"PRAGMA busy_timeout = {settings.busy_timeout_ms}")
    conn.execute(f"PRAGMA synchronous = {settings.synchronous.upper()}")
    conn.execute("PRAGMA cache_size = -16000")  # 16 MB: index pages of a large log stay hot
    conn.execute("PRAGMA temp_store = MEMORY")


def _set_wal(conn: sqlite3.Connection, settings: Settings) -> None:
    """Switch to WAL, retrying while another process holds the lock needed to do so."""
    deadline = time.monotonic() + settings.busy_timeout_s
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
            continue
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"could not switch to WAL (journal_mode={mode})")
        return


def ensure_schema(conn: sqlite3.Connection, path: Path, settings: Settings, *, create: bool
                  ) -> None:
    """Create the schema on a new file, or check that an existing one is ours and current."""
    app_id, version = _identity(conn)
    if app_id == APPLICATION_ID and version == SCHEMA_VERSION:
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            _set_wal(conn, settings)
        return
    _check_identity(conn, path, app_id, version)
    if not create:
        raise StoreUnavailable(f"SQLite store {path} is empty (no event store was created there)")
    _set_wal(conn, settings)
    conn.execute("BEGIN IMMEDIATE")
    try:
        app_id, version = _identity(conn)  # another process may have created it meanwhile
        if app_id != APPLICATION_ID:
            _check_identity(conn, path, app_id, version)
            for statement in statements(SCHEMA):
                conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def statements(script: str) -> list[str]:
    """Split a script into statements (``executescript`` would COMMIT our transaction)."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


def _identity(conn: sqlite3.Connection) -> tuple[int, int]:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    return int(app_id), int(version)


def _check_identity(conn: sqlite3.Connection, path: Path, app_id: int, version: int) -> None:
    if app_id == APPLICATION_ID:
        if version > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"SQLite store {path} has schema version {version}, newer than this orchestrail "
                f"supports ({SCHEMA_VERSION}); upgrade orchestrail to open it"
            )
        raise StoreCorrupted(
            f"SQLite store {path} has unknown schema version {version} "
            f"(expected {SCHEMA_VERSION})"
        )
    tables = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
    ).fetchone()[0]
    if app_id != 0 or tables:
        raise StoreUnavailable(
            f"{path} is a SQLite database but not an orchestrail event store "
            f"(application_id={app_id:#x}, {tables} schema object(s)); use another path"
        )
