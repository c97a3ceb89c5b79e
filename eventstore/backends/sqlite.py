"""``sqlite:///path.db``: the embedded default store (one file, WAL, many processes).

Durability: ``synchronous=FULL`` by default. In WAL mode that fsyncs the log at every
commit, so an append that returned survives a power cut, which is what an audit trail
promises; group commit (``sqlite_writer``) spreads that fsync over every append waiting
at the time. ``?synchronous=normal`` in the URL trades the last commits before a power
cut (never consistency: the file stays intact) for speed; ``?busy_timeout=<ms>`` sets
how long a writer waits for another process's write lock (default 5000).

Concurrency: several OS processes (Claude Code runs hooks as concurrent processes) may
append to one file at once. Each write transaction starts with ``BEGIN IMMEDIATE``, which
takes SQLite's single write lock before reading the stream head, so expected-version
checks are exact across processes and positions are assigned in commit order, without
gaps: a subscriber following positions never skips a later-committed event.

Layout: ``sqlite_schema`` (file format, opening, errors), ``sqlite_writer`` (the writer
thread and group commit), ``sqlite_query`` (``Query`` to SQL). Reads use a separate
aiosqlite connection so they never queue behind writes.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

from eventstore import canonical
from eventstore.append import Row
from eventstore.backends.sqlite_query import (
    NARROW,
    expand_sql,
    has_equality_driver,
    page_sql,
    prefix_condition,
    probe_sql,
    type_prefixes,
)
from eventstore.backends.sqlite_schema import (
    COLUMNS,
    Settings,
    check_path,
    describe_error,
    ensure_schema,
)
from eventstore.backends.sqlite_writer import Writer, append_in_transaction, read_sequence
from eventstore.base import EventStore, wait_at_most
from eventstore.canonical import parse_ts
from eventstore.errors import StoreCorrupted
from eventstore.model import (
    ANY,
    AppendResult,
    ExpectedVersion,
    NewEvent,
    Query,
    RecordedEvent,
    StreamInfo,
    recorded_event,
)
from eventstore.redact import Redactor
from eventstore.retention import RETENTION_STREAM


class SQLiteStore(EventStore):
    gapless_positions = True

    def __init__(self, path: Path, settings: Settings, writer: Writer,
                 reader: aiosqlite.Connection, *, redactor: Redactor | None = None) -> None:
        super().__init__(redactor=redactor)
        self.path = path
        self.url = f"sqlite:///{path}"
        self.settings = settings
        self._writer = writer
        self._reader = reader
        self._committed = 0
        self._appended = asyncio.Event()
        #: One explicit read transaction at a time on the shared reader connection.
        self._snapshot = asyncio.Lock()
        writer.on_commit = self._note_commit

    @classmethod
    async def open(cls, path: Path, *, redactor: Redactor | None = None, create: bool = True,
                   params: dict[str, str] | None = None) -> SQLiteStore:
        """Open (and with ``create``, create) the store file; check it is ours and current.

        Raises ``StoreUnavailable`` (missing with ``create=False``, read-only, locked, not a
        SQLite file, a newer schema) or ``StoreCorrupted``, each naming the path.
        """
        path = Path(os.path.abspath(path))
        settings = Settings(path, dict(params or {}))
        writer = Writer(path, settings)
        try:
            await writer.run_plain(lambda: check_path(path, create=create))
            await writer.run(_prepare, path, settings, create)
            reader = await _open_reader(path, settings)
        except BaseException:
            await writer.close()
            raise
        return cls(path, settings, writer, reader, redactor=redactor)

    async def close(self) -> None:
        try:
            await self._writer.close()
        finally:
            await self._reader.close()

    # ---- writes -----------------------------------------------------------------------

    async def _append(
        self, stream: str, events: Sequence[NewEvent], expected: ExpectedVersion
    ) -> AppendResult:
        return await self._writer.append(stream, events, expected)

    async def _append_many(
        self, batches: Sequence[tuple[str, Sequence[NewEvent], ExpectedVersion]]
    ) -> list[AppendResult]:
        """All queued at once: the writer takes them in order and commits them in groups
        (one transaction and fsync per group, not per batch)."""
        outcomes = await asyncio.gather(
            *(self._writer.append(s, evs, exp) for s, evs, exp in batches),
            return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return [o for o in outcomes if isinstance(o, AppendResult)]

    async def _remove_streams(self, streams: Sequence[str], record: NewEvent) -> RecordedEvent:
        rows: list[Row]
        result, rows = await self._writer.run(_remove_streams, self.path, self.settings,
                                              list(streams), record)
        self._note_commit(result.last_position)
        return rows[0].recorded(result.first_position)

    def _note_commit(self, position: int) -> None:
        if position > self._committed:
            self._committed = position
        self._appended.set()
        self._appended = asyncio.Event()

    async def _wait_for_append(self, after: int, timeout: float) -> None:
        """Wake on a commit from this process at once; other processes' by polling."""
        if self._committed > after:  # committed here after the caller's last look
            return
        await wait_at_most(self._appended.wait(), timeout)

    # ---- reads ------------------------------------------------------------------------

    async def _fetch(self, sql: str, params: Sequence[Any], doing: str) -> list[Any]:
        try:
            return list(await self._reader.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise describe_error(exc, self.path, doing, self.settings) from None

    async def _read_page(self, query: Query, after: int, limit: int) -> list[RecordedEvent]:
        prefixes = type_prefixes(query)
        if prefixes and query.correlation_id is None and query.stream is None:
            rows = await self._read_expanded(query, after, limit, prefixes)
        else:
            narrow = None
            if not has_equality_driver(query):
                for kind, sql, params in probe_sql(query, after):
                    found = await self._fetch(sql, params, "reading events")
                    if found[0][0] <= NARROW:
                        narrow = kind
                        break
            sql, params = page_sql(query, after, limit, narrow=narrow)
            rows = await self._fetch(sql, params, "reading events")
        return self._decode_rows(rows)

    async def _read_expanded(self, query: Query, after: int, limit: int, prefixes: list[str]
                             ) -> list[Any]:
        """Expand ``tool.*`` to the stored types and read the page in ONE read snapshot.

        Two statements outside a transaction could see different snapshots: a type first
        stored between them would be missing from the page while later events were not,
        and a subscriber's cursor would jump over it.
        """
        try:
            async with self._snapshot:
                await self._reader.execute("BEGIN")
                try:
                    expanded: list[str] = []
                    for prefix in prefixes:
                        sql, params = expand_sql(prefix)
                        found = await self._reader.execute_fetchall(sql, params)
                        expanded += [r[0] for r in found]
                    sql, params = page_sql(query, after, limit, expanded)
                    return list(await self._reader.execute_fetchall(sql, params))
                finally:
                    await self._reader.execute("COMMIT")
        except sqlite3.Error as exc:
            raise describe_error(exc, self.path, "reading events", self.settings) from None

    async def _read_stream_page(
        self, stream: str, from_version: int, limit: int
    ) -> list[RecordedEvent]:
        rows = await self._fetch(
            f"SELECT {COLUMNS} FROM events WHERE stream = ? AND version >= ? "
            "ORDER BY version LIMIT ?",
            (stream, from_version, limit),
            f"reading stream {stream!r}",
        )
        return self._decode_rows(rows)

    async def stream_version(self, stream: str) -> int | None:
        rows = await self._fetch("SELECT max(version) FROM events WHERE stream = ?", (stream,),
                                 f"reading stream {stream!r}")
        return None if rows[0][0] is None else int(rows[0][0])

    async def head_position(self) -> int:
        rows = await self._fetch("SELECT seq FROM sqlite_sequence WHERE name = 'events'", (),
                                 "reading the head position")
        return int(rows[0][0]) if rows else 0

    async def streams(self, prefix: str | None = None) -> list[StreamInfo]:
        where, params = prefix_condition("stream", prefix or "")
        rows = await self._fetch(
            "SELECT g.stream, g.n, last.version, last.hash, g.first_pos, last.position, "
            "first.recorded_at, last.recorded_at FROM ("
            " SELECT stream, count(*) AS n, max(version) AS v, min(position) AS first_pos"
            f" FROM events WHERE {where} GROUP BY stream"
            ") AS g "
            "JOIN events AS last ON last.stream = g.stream AND last.version = g.v "
            "JOIN events AS first ON first.position = g.first_pos "
            "ORDER BY g.first_pos",
            params,
            "listing streams",
        )
        return [
            StreamInfo(
                stream=r[0], count=r[1], last_version=r[2], last_hash=r[3], first_position=r[4],
                last_position=r[5], first_recorded_at=parse_ts(r[6]),
                last_recorded_at=parse_ts(r[7]),
            )
            for r in rows
        ]

    def _decode(self, r: Any) -> RecordedEvent:
        return self._decode_rows([r])[0]

    def _decode_rows(self, rows: Sequence[Any]) -> list[RecordedEvent]:
        try:
            return decode_rows(rows)
        except (ValueError, TypeError):
            for r in rows:  # find the row to name
                try:
                    decode_rows([r])
                except (ValueError, TypeError) as exc:
                    raise StoreCorrupted(
                        f"SQLite store {self.path}: the event at position {r[0]} cannot be "
                        f"read ({exc})"
                    ) from None
            raise


def decode_rows(rows: Sequence[Any]) -> list[RecordedEvent]:
    """Rows (``COLUMNS`` order) to events: the read path's whole per-event cost.

    Why one loop and not a call per row: a replay reads 100,000 events, and the call,
    attribute lookups and two ``json.loads`` per row were most of its read time.
    ``canonical.loads`` parses (orjson when loaded); the events of one append share
    their ``recorded_at`` text, so it is parsed once per run of equal values.
    """
    out: list[RecordedEvent] = []
    add = out.append
    load = canonical.loads
    parse = parse_ts
    build = recorded_event
    rec_text: str | None = None
    rec_at: datetime | None = None
    for r in rows:
        if r[9] != rec_text:
            rec_text = r[9]
            rec_at = parse(r[9])
        assert rec_at is not None
        add(build(r[1], r[2], r[3], r[0], r[4], load(r[10]), load(r[11]), r[5], r[6], r[7],
                  parse(r[8]), rec_at, r[12], r[13]))
    return out


# ---- functions that run on the writer thread ---------------------------------------------


def _prepare(conn: sqlite3.Connection, path: Path, settings: Settings, create: bool) -> None:
    try:
        ensure_schema(conn, path, settings, create=create)
    except sqlite3.Error as exc:
        raise describe_error(exc, path, "opening", settings) from None


def _remove_streams(conn: sqlite3.Connection, path: Path, settings: Settings,
                    streams: list[str], record: NewEvent) -> tuple[AppendResult, list[Row]]:
    """Retention: record the removal and delete the streams in ONE transaction."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result, rows = append_in_transaction(conn, RETENTION_STREAM, [record], ANY,
                                                 read_sequence(conn) + 1)
            conn.execute("INSERT INTO retention_guard (token) VALUES ('retention')")
            for i in range(0, len(streams), 500):
                chunk = streams[i: i + 500]
                conn.execute(
                    f"DELETE FROM events WHERE stream IN ({', '.join('?' * len(chunk))})", chunk)
            conn.execute("DELETE FROM retention_guard")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise describe_error(exc, path, "applying retention", settings) from None
    return result, rows


async def _open_reader(path: Path, settings: Settings) -> aiosqlite.Connection:
    pending = aiosqlite.connect(str(path), timeout=settings.busy_timeout_s, isolation_level=None)
    # aiosqlite's worker thread is not a daemon: a store someone forgot to close (an
    # exception path in a hook) would keep the process alive forever at exit. This
    # connection only reads, so letting the interpreter drop it at exit loses nothing.
    thread = getattr(pending, "_thread", None)
    if isinstance(thread, threading.Thread) and not thread.is_alive():
        thread.daemon = True
    try:
        reader = await pending
    except sqlite3.Error as exc:
        raise describe_error(exc, path, "opening a reader", settings) from None
    try:
        await reader.execute("PRAGMA query_only = 1")
        await reader.execute(f"PRAGMA busy_timeout = {settings.busy_timeout_ms}")
        await reader.execute("PRAGMA cache_size = -16000")
    except sqlite3.Error as exc:
        await reader.close()
        raise describe_error(exc, path, "opening a reader", settings) from None
    return reader


__all__ = ["SQLiteStore"]
