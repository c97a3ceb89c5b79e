"""The JSONL backend's sidecar index: a disposable SQLite file next to the segments.

Why SQLite (stdlib ``sqlite3``): queries must not scan the segments, several processes
read it while one writes (WAL), and a half-finished update rolls back by itself. It is
never the source of truth: every row can be rebuilt from the segments, and it records
for each segment the size and mtime it has indexed, so the store can tell on open (and
under the writer lock) whether the files moved on without it.

What it adds that the segments alone cannot give: ``meta.head``, the highest position it
has ever seen committed. It survives the loss of events at the end of the log (a
truncated or restored segment), which lets ``verify`` report a truncation instead of
silently agreeing with a shorter log. Deleting ``index.db`` forgets it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from eventstore.backends.jsonl_format import IndexRow
from eventstore.canonical import format_ts
from eventstore.model import Query

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS segments(
    seq INTEGER PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    lines INTEGER NOT NULL,
    first_pos INTEGER,
    last_pos INTEGER
);
CREATE TABLE IF NOT EXISTS events(
    position INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    stream TEXT NOT NULL,
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    actor TEXT NOT NULL,
    correlation_id TEXT,
    occurred_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    hash TEXT NOT NULL,
    seg INTEGER NOT NULL,
    off INTEGER NOT NULL,
    len INTEGER NOT NULL,
    line INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS ev_id ON events(id);
CREATE UNIQUE INDEX IF NOT EXISTS ev_stream ON events(stream, version);
CREATE INDEX IF NOT EXISTS ev_corr ON events(correlation_id, position)
    WHERE correlation_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS ev_type ON events(type, position);
CREATE INDEX IF NOT EXISTS ev_actor ON events(actor, position);
"""

_INSERT = "INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"


class SegmentRecord(NamedTuple):
    seq: int
    size: int
    mtime_ns: int
    lines: int
    first_pos: int | None
    last_pos: int | None


class Located(NamedTuple):
    """Where one event's line is: enough to read it back."""

    position: int
    seg: int
    off: int
    len: int
    line: int


@dataclass(slots=True)
class StreamRow:
    stream: str
    count: int
    last_version: int
    last_hash: str
    first_position: int
    last_position: int
    first_recorded_at: str
    last_recorded_at: str


class IndexBroken(Exception):
    """The index file is unreadable or of another schema: rebuild it."""


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) and check the schema; raise IndexBroken when unusable."""
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    except sqlite3.Error as exc:
        raise IndexBroken(str(exc)) from None
    try:
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        row = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        if row[0]:
            got = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if got is None or got[0] != SCHEMA_VERSION:
                raise IndexBroken(f"schema {got[0] if got else 'unknown'}, want {SCHEMA_VERSION}")
        else:
            conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
            conn.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema', ?), ('head', '0')",
                (SCHEMA_VERSION,),
            )
    except sqlite3.Error as exc:
        conn.close()
        raise IndexBroken(str(exc)) from None
    except IndexBroken:
        conn.close()
        raise
    return conn


def _range_upper(prefix: str) -> str | None:
    """The smallest string above every string starting with ``prefix`` (None: no bound)."""
    last = ord(prefix[-1])
    if last >= 0x10FFFF:
        return None
    return prefix[:-1] + chr(last + 1)


def _prefix_clause(column: str, prefix: str, args: list[Any]) -> str:
    upper = _range_upper(prefix)
    args.append(prefix)
    if upper is None:
        args.append(prefix)
        return f"({column} >= ? AND substr({column}, 1, length(?)) = {column})"
    args.append(upper)
    return f"({column} >= ? AND {column} < ?)"


def query_sql(query: Query, after: int, limit: int) -> tuple[str, list[Any]]:
    """SQL selecting the lines a ``Query`` matches; the semantics of ``Query.matches``."""
    where = ["position > ?"]
    args: list[Any] = [after]
    if query.stream is not None:
        where.append("stream = ?")
        args.append(query.stream)
    if query.stream_prefix:
        where.append(_prefix_clause("stream", query.stream_prefix, args))
    if query.types is not None and "*" not in query.types:
        exact = [t for t in query.types if not t.endswith(".*")]
        parts = []
        if exact:
            parts.append(f"type IN ({','.join('?' * len(exact))})")
            args.extend(exact)
        for t in query.types:
            if t.endswith(".*"):
                parts.append(_prefix_clause("type", t[:-1], args))
        where.append("(" + " OR ".join(parts) + ")" if parts else "0")
    if query.actors is not None:
        if query.actors:
            where.append(f"actor IN ({','.join('?' * len(query.actors))})")
            args.extend(query.actors)
        else:
            where.append("0")
    if query.correlation_id is not None:
        where.append("correlation_id = ?")
        args.append(query.correlation_id)
    if query.since is not None:
        where.append("occurred_at >= ?")
        args.append(format_ts(query.since))
    if query.until is not None:
        where.append("occurred_at < ?")
        args.append(format_ts(query.until))
    args.append(limit)
    sql = (
        "SELECT position, seg, off, len, line FROM events WHERE "
        + " AND ".join(where) + " ORDER BY position LIMIT ?"
    )
    return sql, args


class Index:
    """Typed access to one connection. Writers call the mutating methods under the lock."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    def close(self) -> None:
        self.conn.close()

    # ---- reads ----------------------------------------------------------------------

    def head(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key='head'").fetchone()
        return int(row[0]) if row else 0

    def flag(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def segments(self) -> dict[int, SegmentRecord]:
        rows = self.conn.execute(
            "SELECT seq, size, mtime_ns, lines, first_pos, last_pos FROM segments ORDER BY seq"
        ).fetchall()
        return {r[0]: SegmentRecord(*r) for r in rows}

    def last_segment(self) -> SegmentRecord | None:
        row = self.conn.execute(
            "SELECT seq, size, mtime_ns, lines, first_pos, last_pos FROM segments "
            "ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return None if row is None else SegmentRecord(*row)

    def last_line_of(self, seq: int) -> Located | None:
        row = self.conn.execute(
            "SELECT position, seg, off, len, line FROM events WHERE seg = ? "
            "AND position = (SELECT last_pos FROM segments WHERE seq = ?)",
            (seq, seq),
        ).fetchone()
        return None if row is None else Located(*row)

    def stream_head(self, stream: str) -> tuple[int, str] | None:
        row = self.conn.execute(
            "SELECT version, hash FROM events WHERE stream = ? ORDER BY version DESC LIMIT 1",
            (stream,),
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def find_ids(self, ids: Sequence[str]) -> dict[str, tuple[str, int, int]]:
        out: dict[str, tuple[str, int, int]] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i: i + 500]
            rows = self.conn.execute(
                f"SELECT id, stream, version, position FROM events "
                f"WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            for r in rows:
                out[r[0]] = (r[1], int(r[2]), int(r[3]))
        return out

    def query(self, query: Query, after: int, limit: int) -> list[Located]:
        sql, args = query_sql(query, after, limit)
        return [Located(*r) for r in self.conn.execute(sql, args).fetchall()]

    def stream_page(self, stream: str, from_version: int, limit: int) -> list[Located]:
        rows = self.conn.execute(
            "SELECT position, seg, off, len, line FROM events WHERE stream = ? AND version >= ? "
            "ORDER BY version LIMIT ?",
            (stream, from_version, limit),
        ).fetchall()
        return [Located(*r) for r in rows]

    def stream_version(self, stream: str) -> int | None:
        row = self.conn.execute(
            "SELECT max(version) FROM events WHERE stream = ?", (stream,)
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def streams(self, prefix: str | None) -> list[StreamRow]:
        args: list[Any] = []
        where = ""
        if prefix:
            where = "WHERE " + _prefix_clause("stream", prefix, args)
        sql = f"""
            SELECT g.stream, g.n, g.v, l.hash, g.lo, g.hi, f.recorded_at, l.recorded_at
            FROM (SELECT stream, count(*) AS n, max(version) AS v, min(position) AS lo,
                         max(position) AS hi
                  FROM events {where} GROUP BY stream) AS g
            JOIN events AS f ON f.position = g.lo
            JOIN events AS l ON l.position = g.hi
            ORDER BY g.lo
        """
        return [StreamRow(*r) for r in self.conn.execute(sql, args).fetchall()]

    def segments_of(self, streams: Iterable[str]) -> list[int]:
        names = list(streams)
        out: set[int] = set()
        for i in range(0, len(names), 500):
            chunk = names[i: i + 500]
            rows = self.conn.execute(
                f"SELECT DISTINCT seg FROM events WHERE stream IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            out.update(int(r[0]) for r in rows)
        return sorted(out)

    def lines_of(self, seq: int) -> list[tuple[str, int, int]]:
        """(stream, off, len) of every indexed line of one segment, in file order."""
        rec = self.segments().get(seq)
        if rec is None or rec.first_pos is None:
            return []
        rows = self.conn.execute(
            "SELECT stream, off, len FROM events WHERE position BETWEEN ? AND ? AND seg = ? "
            "ORDER BY off",
            (rec.first_pos, rec.last_pos, seq),
        ).fetchall()
        return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]

    # ---- writes (caller holds the store lock) ---------------------------------------

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def insert(self, rows: Sequence[IndexRow]) -> None:
        self.conn.executemany(_INSERT, rows)

    def set_head(self, head: int) -> None:
        """Raise (never lower) the remembered head."""
        self.conn.execute(
            "UPDATE meta SET value = CAST(max(CAST(value AS INTEGER), ?) AS TEXT) "
            "WHERE key = 'head'",
            (head,),
        )

    def set_flag(self, key: str, value: str | None) -> None:
        if value is None:
            self.conn.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def put_segment(self, rec: SegmentRecord) -> None:
        self.conn.execute("INSERT OR REPLACE INTO segments VALUES (?,?,?,?,?,?)", rec)

    def drop_segment_rows(self, seq: int) -> None:
        rec = self.segments().get(seq)
        if rec is not None and rec.first_pos is not None:
            self.conn.execute(
                "DELETE FROM events WHERE position BETWEEN ? AND ? AND seg = ?",
                (rec.first_pos, rec.last_pos, seq),
            )
        self.conn.execute("DELETE FROM segments WHERE seq = ?", (seq,))

    def clear(self) -> None:
        self.conn.execute("DELETE FROM events")
        self.conn.execute("DELETE FROM segments")
