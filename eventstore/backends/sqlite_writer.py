"""The SQLite writer: one thread, one connection, group commit.

Why not aiosqlite for writes: aiosqlite runs every call (``execute``, ``fetchone``,
cursor close, ``commit``) as a separate hop from the event loop to its thread and back,
about 0.2 ms each on the 2-core machine ``bench/store.py`` runs on. An append
transaction is ten or so statements (BEGIN IMMEDIATE, the head, the existing ids, the
insert, savepoints, COMMIT), so the hops alone would cost more than the whole write.
Here a complete transaction is one plain function running on a dedicated thread that
owns a ``sqlite3`` connection: one hop per transaction, and the sqlite3 module releases
the GIL while SQLite works, so the event loop keeps running. Reads stay on aiosqlite
(a separate connection, so readers never queue behind writers).

Group commit: appends that arrive while a transaction is being written wait in a queue;
the next transaction takes all of them (up to ``MAX_GROUP``), plans each against the state
the earlier ones leave (so one append's ``WrongExpectedVersion`` fails only that append),
inserts all their rows at once and pays for one COMMIT, which is one fsync of the WAL
with ``synchronous=FULL``. A lone append is written at once; it never waits for company.
Statements per group stay constant (heads, sequence, insert), not per append.

Across processes, ``BEGIN IMMEDIATE`` takes SQLite's write lock up front (waiting up to
``busy_timeout``), so the head read, the expected-version check and the insert happen
under one lock, and positions are assigned in commit order.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from eventstore.append import (
    Existing,
    Head,
    Row,
    plan_append,
    plan_append_values,
    result_of,
)
from eventstore.backends.sqlite_schema import INSERT_SQL, Settings, connect, describe_error
from eventstore.canonical import format_ts
from eventstore.errors import StoreError
from eventstore.model import AppendResult, ExpectedVersion, NewEvent, append_result

MAX_GROUP = 256
_ID_CHUNK = 500  # ids per "IN (...)": well under SQLite's bound-parameter limit

T = TypeVar("T")


class AppendJob:
    __slots__ = ("events", "expected", "future", "rows", "stream")

    def __init__(self, stream: str, events: Sequence[NewEvent], expected: ExpectedVersion,
                 future: asyncio.Future[AppendResult]) -> None:
        self.stream = stream
        self.events = events
        self.expected = expected
        self.future = future
        self.rows: list[Row] = []


def row_params(row: Row, position: int) -> tuple[Any, ...]:
    return (
        position, row.id, row.stream, row.version, row.type, row.actor, row.correlation_id,
        row.causation_id, row.occurred_at_text, row.recorded_at_text, row.data_json,
        row.metadata_json, row.prev_hash, row.hash,
    )


def read_head(conn: sqlite3.Connection, stream: str) -> Head | None:
    found = conn.execute(
        "SELECT version, hash FROM events WHERE stream = ? ORDER BY version DESC LIMIT 1",
        (stream,),
    ).fetchone()
    return Head(found[0], found[1]) if found else None


def read_existing(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, Existing]:
    out: dict[str, Existing] = {}
    for i in range(0, len(ids), _ID_CHUNK):
        chunk = ids[i: i + _ID_CHUNK]
        sql = (
            "SELECT id, stream, version, position FROM events "
            f"WHERE id IN ({', '.join('?' * len(chunk))})"
        )
        for eid, stream, version, position in conn.execute(sql, chunk):
            out[eid] = Existing(stream, version, position)
    return out


def read_sequence(conn: sqlite3.Connection) -> int:
    found = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return int(found[0]) if found else 0


def append_in_transaction(conn: sqlite3.Connection, stream: str, events: Sequence[NewEvent],
                          expected: ExpectedVersion, next_position: int
                          ) -> tuple[AppendResult, list[Row]]:
    """One append inside an open write transaction; positions start at ``next_position``."""
    existing = read_existing(conn, [e.id for e in events])
    head = read_head(conn, stream)
    plan = plan_append(stream, events, expected, head, existing, datetime.now(UTC))
    if isinstance(plan, AppendResult):
        return plan, []
    conn.executemany(INSERT_SQL, [row_params(r, next_position + i) for i, r in enumerate(plan)])
    return result_of(stream, plan, next_position), plan


def read_heads(conn: sqlite3.Connection, streams: Sequence[str]) -> dict[str, Head]:
    """The heads of several streams in one statement (one index seek per stream)."""
    out: dict[str, Head] = {}
    arm = ("SELECT * FROM (SELECT stream, version, hash FROM events WHERE stream = ? "
           "ORDER BY version DESC LIMIT 1)")
    for i in range(0, len(streams), 100):
        chunk = streams[i: i + 100]
        for stream, version, hash_ in conn.execute(" UNION ALL ".join([arm] * len(chunk)),
                                                   chunk):
            out[stream] = Head(version, hash_)
    return out


def plan_group(conn: sqlite3.Connection, group: Sequence[AppendJob]
               ) -> tuple[list[AppendResult | BaseException], list[tuple[Any, ...]]]:
    """Plan every append of a group in order; return the outcomes and the rows to insert.

    Optimistic about ids: it does not look up whether the batch's ids are already stored
    (a retry or a duplicate is rare, and the lookup cost about 1 us per event). An append
    whose plan fails is planned again with its stored ids looked up (a retry with an
    expected version fails the version check otherwise). One that plans fine but holds a
    stored id fails the insert on the unique index, and ``Writer._write_group`` then
    redoes the group the careful way, which looks every id up (idempotent result or
    ``DuplicateEventId``). Ids repeated within the group are tracked here.
    """
    existing: dict[str, Existing] = {}  # ids written by earlier appends of this group
    track = len(group) > 1
    heads = read_heads(conn, list(dict.fromkeys(job.stream for job in group)))
    position = read_sequence(conn) + 1
    now = datetime.now(UTC)
    now_text = format_ts(now)  # once for the group
    outcomes: list[AppendResult | BaseException] = []
    params: list[tuple[Any, ...]] = []
    for job in group:
        mine = {e.id: existing[e.id] for e in job.events if e.id in existing} if existing \
            else {}
        try:
            try:
                plan = plan_append_values(job.stream, job.events, job.expected,
                                          heads.get(job.stream), mine, now, position, now_text)
            except StoreError:
                # A retry of a stored append fails its version check when its ids are not
                # known: look them up (only now, on this rare path) and decide again.
                stored = read_existing(conn, [e.id for e in job.events])
                if not stored:
                    raise
                plan = plan_append_values(job.stream, job.events, job.expected,
                                          heads.get(job.stream), {**stored, **mine}, now,
                                          position, now_text)
        except StoreError as exc:
            outcomes.append(exc)
            continue
        if isinstance(plan, AppendResult):
            outcomes.append(plan)
            continue
        params += plan
        if track:  # VALUE_FIELDS: position, id, stream, version, ..., hash
            for v in plan:
                existing[v[1]] = Existing(v[2], v[3], v[0])
        last = plan[-1]
        heads[job.stream] = Head(last[3], last[13])
        outcomes.append(append_result(job.stream, plan[0][3], last[3], position, last[0]))
        position += len(plan)
    return outcomes, params


class Writer:
    """Owns the write connection and its thread; batches concurrent appends."""

    def __init__(self, path: Path, settings: Settings) -> None:
        self.path = path
        self.settings = settings
        self._executor = ThreadPoolExecutor(max_workers=1,
                                            thread_name_prefix="orchestrail-sqlite-writer")
        self._conn: sqlite3.Connection | None = None
        self._queue: list[AppendJob] = []
        self._flusher: asyncio.Task[None] | None = None
        #: Write transactions committed and appends they carried (group commit at work).
        self.transactions = 0
        self.appends = 0
        #: Called on the event loop after each commit with the highest new position.
        self.on_commit: Callable[[int], None] | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on the writer thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn, args)

    async def run_plain(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` on the writer thread, without the connection (file checks)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        if self._conn is None:
            self._conn = connect(self.path, self.settings)
        return fn(self._conn, *args)

    # ---- group commit -------------------------------------------------------------------

    async def append(self, stream: str, events: Sequence[NewEvent], expected: ExpectedVersion
                     ) -> AppendResult:
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._queue.append(AppendJob(stream, events, expected, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        # No ``asyncio.shield`` (an extra future and loop hop per append): a cancelled
        # caller cancels only this future, which the flusher then leaves alone; the
        # append itself goes ahead either way, as it did with shield.
        return await future

    async def _flush(self) -> None:
        try:
            while self._queue:
                group, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
                try:
                    outcomes = await self.run(self._write_group, group)
                except BaseException as exc:
                    for job in group:
                        if not job.future.done():
                            job.future.set_exception(_as_store_error(exc, self.path))
                    if not isinstance(exc, Exception):
                        raise
                    continue
                top = 0
                for job, outcome in zip(group, outcomes, strict=True):
                    if isinstance(outcome, BaseException):
                        if not job.future.done():
                            job.future.set_exception(outcome)
                    else:
                        if not job.future.done():
                            job.future.set_result(outcome)
                        top = max(top, outcome.last_position)
                if top and self.on_commit is not None:
                    self.on_commit(top)
        finally:
            self._flusher = None
            if self._queue:  # cancelled with work left: fail it rather than hang callers
                for job in self._queue:
                    if not job.future.done():
                        job.future.set_exception(
                            StoreError(f"SQLite store {self.path}: writer stopped"))
                self._queue = []

    def _write_group(self, conn: sqlite3.Connection, group: list[AppendJob]
                     ) -> list[AppendResult | BaseException]:
        """One transaction, one commit, for the whole group.

        Fast path: read every stream head the group needs in one statement, plan each
        append in order against the state the earlier ones leave (in Python), and insert
        all rows with one ``executemany``. An append that fails its plan
        (``WrongExpectedVersion``, ``DuplicateEventId`` within the group) contributes no
        rows, so it cannot affect the others, and nothing is written before every plan is
        made. Should the insert fail on a constraint (an id that is already stored: a
        retry or a duplicate, see ``plan_group``), the group is redone the careful way:
        each append in its own SAVEPOINT, reading which of its ids exist, so a retry gets
        its original result and only an offending append fails.
        """
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise describe_error(exc, self.path, "starting a write", self.settings) from None
        try:
            try:
                outcomes, params = plan_group(conn, group)
                if params:
                    conn.executemany(INSERT_SQL, params)
            except sqlite3.IntegrityError:
                # an id already stored (retry, duplicate), or the file changed behind us
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                outcomes = self._one_by_one(conn, group)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise describe_error(exc, self.path, "appending", self.settings) from None
            raise
        self.transactions += 1
        self.appends += len(group)
        return outcomes

    def _one_by_one(self, conn: sqlite3.Connection, group: list[AppendJob]
                    ) -> list[AppendResult | BaseException]:
        """The careful path: each append inside its own savepoint."""
        outcomes: list[AppendResult | BaseException] = []
        position = read_sequence(conn) + 1
        for job in group:
            conn.execute("SAVEPOINT append")
            try:
                result, rows = append_in_transaction(
                    conn, job.stream, job.events, job.expected, position)
            except (StoreError, sqlite3.Error) as exc:
                conn.execute("ROLLBACK TO append")
                conn.execute("RELEASE append")
                outcomes.append(_as_store_error(exc, self.path, self.settings))
                continue
            conn.execute("RELEASE append")
            position += len(rows)
            outcomes.append(result)
        return outcomes

    async def close(self) -> None:
        while self._flusher is not None:
            await asyncio.wait({self._flusher})
        if self._conn is not None:
            await self.run(_close)
            self._conn = None
        self._executor.shutdown(wait=True)


def _close(conn: sqlite3.Connection) -> None:
    conn.close()


def _as_store_error(exc: BaseException, path: Path, settings: Settings | None = None
                    ) -> BaseException:
    if isinstance(exc, sqlite3.Error):
        return describe_error(exc, path, "appending", settings)
    return exc
