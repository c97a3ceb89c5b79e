"""``postgresql://``: the production store, shared by many workers on many machines.

Design decisions, and why:

- **Commit-ordered, gapless positions.** Every append transaction first locks the single
  row of ``orchestrail_head`` (``SELECT ... FOR UPDATE``), assigns ``head + 1 ..`` to its
  events and moves the head. The next appender waits on that row lock until the previous
  transaction has ended (and is visible), so positions are assigned in commit order and a
  subscriber following the position cursor never passes over an event that commits later
  (the problem eventsourcing solves with ``LOCK TABLE ... IN EXCLUSIVE MODE``, Marten with
  a high-water mark). Unlike a sequence, the row is transactional: a rolled-back append
  leaves no hole, so ``gapless_positions`` is True and ``verify`` flags any deleted event.
  Unlike ``LOCK TABLE ... EXCLUSIVE`` it needs no UPDATE/DELETE privilege on the event
  table, so an append-only database role works (docs/backends.md).
- **Exact hashes.** The chain hash covers the canonical JSON *text* of ``data`` and
  ``metadata``. JSONB normalizes numbers (``1e300``, ``-0.0``), reorders keys and cannot
  hold ``\\u0000``, so the canonical text is stored in ``data_json``/``metadata_json`` and
  read back verbatim; ``data``/``metadata`` are generated JSONB columns for SQL queries.
- **Four short round trips per append**, one transaction: ``BEGIN`` + lock the head (one
  simple-protocol message), read the stream head and look up the batch's ids (one
  statement), insert every row with one ``unnest`` statement that also moves the head and
  notifies (data-modifying CTEs), ``COMMIT``. Measured faster here than psycopg's async
  pipeline mode, whose per-sync overhead outweighed the saved round trips.
- **LISTEN/NOTIFY is only a wake-up.** A background listener connection turns
  notifications into an asyncio event; ``_wait_for_append`` always has the poll timeout as
  a fallback, so a lost notification or a dead listener delays a subscriber by at most
  one poll interval (never the hang of eventsourcing#305).
- **Errors.** A connection that fails (bad credentials, unreachable host, missing database,
  server gone mid-append) raises ``StoreUnavailable`` with one line and the password
  masked; an append that failed before COMMIT wrote nothing. If the connection dies during
  COMMIT the outcome is unknown: retry the same events (same ids) and the idempotent retry
  returns the original result if it had committed.

URL options besides libpq's own: ``?schema=NAME`` (default: the search_path's first
schema, usually ``public``), ``pool_min`` (1), ``pool_max`` (10).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from eventstore.append import Existing, Head, Row, plan_append, result_of
from eventstore.backends.pg_schema import (
    EVENTS_TABLE,
    HEAD_TABLE,
    Target,
    apply_pending,
    connect,
    current_schema,
    ensure_schema,
    unavailable,
)
from eventstore.base import EventStore, wait_at_most
from eventstore.errors import StoreUnavailable
from eventstore.model import (
    ANY,
    AppendResult,
    ExpectedVersion,
    NewEvent,
    Query,
    RecordedEvent,
    StreamInfo,
)
from eventstore.redact import Redactor
from eventstore.retention import RETENTION_STREAM

log = structlog.get_logger("eventstore.postgres")

_COLUMNS = (
    "position, id, stream, version, type, actor, correlation_id, causation_id, "
    "occurred_at, recorded_at, data_json, metadata_json, prev_hash, hash"
)
#: Simple query protocol (no parameters): both statements in one message. READ COMMITTED
#: whatever the server default, so every statement after the lock sees the transaction
#: that held it before us.
_BEGIN_AND_LOCK = (
    b"BEGIN ISOLATION LEVEL READ COMMITTED; "
    b"SELECT position FROM " + HEAD_TABLE.encode() + b" FOR UPDATE"
)
#: One stream's head (kind 0: its last version and hash) and where the batch's ids are
#: already stored (kind 1): the hot path of a single append, one index probe.
_READS = (
    "SELECT 0, NULL::text, NULL::text, version, hash, NULL::bigint FROM ("
    f"SELECT version, hash FROM {EVENTS_TABLE} WHERE stream = %(stream)s "
    "ORDER BY version DESC LIMIT 1) s "
    "UNION ALL "
    f"SELECT 1, id, stream, version, NULL, position FROM {EVENTS_TABLE} "
    "WHERE id = ANY(%(ids)s::text[])"
)
#: The same for many streams at once (``_append_many``): LATERAL ... LIMIT 1 keeps it one
#: index probe per stream (measured slower than ``_READS`` for a single append).
_READS_MANY = (
    "SELECT 0, NULL::text, s.stream, h.version, h.hash, NULL::bigint "
    "FROM unnest(%(streams)s::text[]) AS s(stream) CROSS JOIN LATERAL ("
    f"SELECT version, hash FROM {EVENTS_TABLE} e WHERE e.stream = s.stream "
    "ORDER BY version DESC LIMIT 1) h "
    "UNION ALL "
    f"SELECT 1, id, stream, version, NULL, position FROM {EVENTS_TABLE} "
    "WHERE id = ANY(%(ids)s::text[])"
)
_INSERT = (
    f"INSERT INTO {EVENTS_TABLE} ({_COLUMNS}) "
    "SELECT %(pos)s + u.n, u.id, u.stream, u.ver, u.type, u.actor, u.corr, u.caus, "
    "u.occ, %(rec)s, u.data, u.meta, u.prev, u.hash "
    # binary (%b) arrays: psycopg's text-array dumper escapes every element in Python,
    # which cost more than the whole server-side insert for 1 KB payloads
    "FROM unnest(%(ids)b::text[], %(streams)b::text[], %(vers)b::int8[], %(types)b::text[], "
    "%(actors)b::text[], %(corrs)b::text[], %(causes)b::text[], %(occs)b::timestamptz[], "
    "%(datas)b::text[], %(metas)b::text[], %(prevs)b::text[], %(hashes)b::text[]) "
    "WITH ORDINALITY AS u(id, stream, ver, type, actor, corr, caus, occ, data, meta, prev, "
    "hash, n)"
)
#: Insert the rows, move the head, notify: one statement (all or nothing, like the rest).
_WRITE = (
    f"WITH ins AS ({_INSERT}), "
    f"head AS (UPDATE {HEAD_TABLE} SET position = %(new_head)s) "
    "SELECT pg_notify(%(channel)s, %(new_head)s::text)"
)


def _write_params(rows: Sequence[Row], head_position: int, recorded_at: datetime,
                  channel: str) -> dict[str, Any]:
    """Parameters of ``_WRITE``: rows get positions head_position+1 onwards, in order."""
    return {
        "pos": head_position, "rec": recorded_at,
        "ids": [r.id for r in rows], "streams": [r.stream for r in rows],
        "vers": [r.version for r in rows], "types": [r.type for r in rows],
        "actors": [r.actor for r in rows], "corrs": [r.correlation_id for r in rows],
        "causes": [r.causation_id for r in rows], "occs": [r.occurred_at for r in rows],
        "datas": [r.data_json for r in rows], "metas": [r.metadata_json for r in rows],
        "prevs": [r.prev_hash for r in rows], "hashes": [r.hash for r in rows],
        "new_head": head_position + len(rows), "channel": channel,
    }


def _event(row: Sequence[Any]) -> RecordedEvent:
    (position, id_, stream, version, type_, actor, corr, caus, occ, rec, data, meta,
     prev, hash_) = row
    return RecordedEvent.model_construct(
        id=id_, stream=stream, version=version, position=position, type=type_,
        data=json.loads(data), metadata=json.loads(meta), actor=actor,
        correlation_id=corr, causation_id=caus, occurred_at=occ.astimezone(UTC),
        recorded_at=rec.astimezone(UTC), prev_hash=prev, hash=hash_,
    )


async def _rollback(conn: psycopg.AsyncConnection[Any]) -> None:
    """End a failed transaction so the connection goes back to the pool clean; a broken
    or busy connection is left alone (the pool discards it; the server rolls back)."""
    status = conn.info.transaction_status
    if status in (psycopg.pq.TransactionStatus.INTRANS, psycopg.pq.TransactionStatus.INERROR):
        with contextlib.suppress(psycopg.Error):
            await conn.execute(b"ROLLBACK")


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _filters(query: Query, after: int) -> tuple[list[str], dict[str, Any]]:
    """``Query`` as SQL conditions; semantics must equal ``Query.matches`` (contract-tested)."""
    where = ["position > %(after)s"]
    params: dict[str, Any] = {"after": after}
    if query.stream is not None:
        # Within a stream positions rise with versions: start the (stream, version) index
        # scan after the cursor's own version when the cursor is an event of this stream.
        where.append("stream = %(stream)s")
        where.append(
            f"version > coalesce((SELECT c.version FROM {EVENTS_TABLE} c "
            "WHERE c.position = %(after)s AND c.stream = %(stream)s), -1)"
        )
        params["stream"] = query.stream
    if query.stream_prefix is not None:
        where.append("stream LIKE %(prefix)s")
        params["prefix"] = _like_prefix(query.stream_prefix)
    if query.types is not None and "*" not in query.types:
        exact = [t for t in query.types if not t.endswith(".*")]
        prefixes = [_like_prefix(t[:-1]) for t in query.types if t.endswith(".*")]
        parts = []
        if exact:
            parts.append("type = ANY(%(types)s::text[])")
            params["types"] = exact
        if prefixes:
            parts.append("type LIKE ANY(%(type_prefixes)s::text[])")
            params["type_prefixes"] = prefixes
        where.append("(" + " OR ".join(parts) + ")")
    if query.actors is not None:
        where.append("actor = ANY(%(actors)s::text[])")
        params["actors"] = list(query.actors)
    if query.correlation_id is not None:
        where.append("correlation_id = %(corr)s")
        params["corr"] = query.correlation_id
    if query.since is not None:
        where.append("occurred_at >= %(since)s")
        params["since"] = query.since
    if query.until is not None:
        where.append("occurred_at < %(until)s")
        params["until"] = query.until
    return where, params


class PostgresStore(EventStore):
    gapless_positions = True

    def __init__(self, target: Target, pool: AsyncConnectionPool[Any], schema: str, *,
                 redactor: Redactor | None = None) -> None:
        super().__init__(redactor=redactor)
        self.url = target.masked
        self.target = target
        self.schema = schema
        #: NOTIFY channel, one per schema (identifiers are at most 63 bytes).
        self.channel = f"orchestrail_events:{schema}"[:63]
        self._pool = pool
        self._closed = False
        self._seen_head = 0
        self._wakeup = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str, *, redactor: Redactor | None = None,
                   create: bool = True) -> PostgresStore:
        """Connect, check (and with ``create``, migrate) the schema, start the pool.

        Raises ``StoreUnavailable`` for a server that cannot be reached or logged into, a
        missing database, an old schema with ``create=False``, or a newer schema than this
        code knows; ``ConfigError`` for a malformed URL.
        """
        target = Target.parse(url)
        conn = await connect(target)
        try:
            try:
                await ensure_schema(conn, target, create=create)
                schema = await current_schema(conn, target)
            except psycopg.Error as exc:
                raise unavailable(target, "cannot check the schema", exc) from None
        finally:
            await conn.close()

        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            target.conninfo, kwargs={"autocommit": True, **target.kwargs},
            min_size=target.pool_min, max_size=target.pool_max, open=False,
            name=f"orchestrail:{target.masked}",
        )
        try:
            await pool.open(wait=True, timeout=float(target.kwargs.get("connect_timeout", 10)) + 5)
        except psycopg.Error as exc:
            await pool.close()
            raise unavailable(target, "cannot open a connection pool", exc) from None
        return cls(target, pool, schema, redactor=redactor)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        await self._pool.close()

    @contextlib.asynccontextmanager
    async def _conn(self, what: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection; connection-level failures become ``StoreUnavailable``."""
        if self._closed:
            raise StoreUnavailable(f"PostgreSQL store {self.url}: {what}: the store is closed")
        try:
            async with self._pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise unavailable(self.target, what, exc) from None
        except psycopg.errors.InsufficientPrivilege as exc:
            # e.g. retention run by an append-only role (docs/backends.md)
            raise unavailable(self.target, what, exc) from None

    # ---- writes -----------------------------------------------------------------------

    async def _append(
        self, stream: str, events: Sequence[NewEvent], expected: ExpectedVersion
    ) -> AppendResult:
        what = (f"append to {stream!r} failed (nothing was written unless the connection "
                "broke during commit: retry the same events, the retry is idempotent)")
        async with self._conn(what) as conn:
            plan, first = await self._write(conn, stream, events, expected, None)
        if isinstance(plan, AppendResult):
            return plan
        return result_of(stream, plan, first)

    async def _begin_and_lock(self, conn: psycopg.AsyncConnection[Any]) -> int:
        """Open the append transaction and take the head-row lock; return the head position.

        The lock serializes appends, so positions are assigned in commit order."""
        cur = await conn.execute(_BEGIN_AND_LOCK)
        cur.nextset()
        head_row = await cur.fetchone()
        if head_row is None:
            raise StoreUnavailable(
                f"PostgreSQL store {self.url}: the {HEAD_TABLE} row is missing "
                "(was the table edited by hand?)"
            )
        return int(head_row[0])

    async def _write(
        self,
        conn: psycopg.AsyncConnection[Any],
        stream: str,
        events: Sequence[NewEvent],
        expected: ExpectedVersion,
        remove: Sequence[str] | None,
    ) -> tuple[AppendResult | list[Row], int]:
        """One append transaction: lock the head, plan, insert, move the head, notify.

        With ``remove`` (retention), the same transaction also deletes those streams,
        with the transaction-local setting the append-only trigger lets through.
        """
        try:
            head_position = await self._begin_and_lock(conn)
            cur = await conn.execute(_READS, {"stream": stream, "ids": [e.id for e in events]})
            head: Head | None = None
            existing: dict[str, Existing] = {}
            for kind, id_, where, version, hash_, position in await cur.fetchall():
                if kind == 0:
                    head = Head(int(version), str(hash_))
                else:
                    existing[str(id_)] = Existing(str(where), int(version), int(position))
            plan = plan_append(stream, events, expected, head, existing, datetime.now(UTC))
            if isinstance(plan, AppendResult):
                await conn.execute(b"COMMIT")
                return plan, 0
            if remove:
                await conn.execute("SELECT set_config('orchestrail.retention', 'on', true)")
                await conn.execute(
                    f"DELETE FROM {EVENTS_TABLE} WHERE stream = ANY(%s::text[])", (list(remove),)
                )
            await conn.execute(_WRITE, _write_params(plan, head_position, plan[0].recorded_at,
                                                     self.channel))
            await conn.execute(b"COMMIT")
        except BaseException:
            await _rollback(conn)
            raise
        return plan, head_position + 1

    async def _append_many(
        self, batches: Sequence[tuple[str, Sequence[NewEvent], ExpectedVersion]]
    ) -> list[AppendResult]:
        """All batches in ONE transaction and one INSERT: ``store copy`` moves a page of
        thousands of events (many small per-stream batches) per round of commits instead
        of one commit per batch. All or nothing: any failed check rolls back every batch."""
        if not batches:
            return []
        what = ("bulk append failed (nothing was written unless the connection broke during "
                "commit: retry the same events, the retry is idempotent)")
        async with self._conn(what) as conn:
            try:
                head_position = await self._begin_and_lock(conn)
                cur = await conn.execute(_READS_MANY, {
                    "streams": sorted({s for s, _, _ in batches}),
                    "ids": [e.id for _, evs, _ in batches for e in evs]})
                heads: dict[str, Head] = {}
                existing: dict[str, Existing] = {}
                for kind, id_, where, version, hash_, position in await cur.fetchall():
                    if kind == 0:
                        heads[str(where)] = Head(int(version), str(hash_))
                    else:
                        existing[str(id_)] = Existing(str(where), int(version), int(position))
                now = datetime.now(UTC)
                rows: list[Row] = []
                results: list[AppendResult] = []
                for stream, events, expected in batches:
                    mine = {e.id: existing[e.id] for e in events if e.id in existing}
                    plan = plan_append(stream, events, expected, heads.get(stream), mine, now)
                    if isinstance(plan, AppendResult):
                        results.append(plan)
                        continue
                    first = head_position + len(rows) + 1
                    for i, r in enumerate(plan):
                        existing[r.id] = Existing(stream, r.version, first + i)
                    heads[stream] = Head(plan[-1].version, plan[-1].hash)
                    rows.extend(plan)
                    results.append(result_of(stream, plan, first))
                if rows:
                    await conn.execute(_WRITE, _write_params(rows, head_position, now,
                                                             self.channel))
                await conn.execute(b"COMMIT")
            except BaseException:
                await _rollback(conn)
                raise
        return results

    async def _remove_streams(self, streams: Sequence[str], record: NewEvent) -> RecordedEvent:
        async with self._conn("retention failed (nothing was removed)") as conn:
            plan, first = await self._write(conn, RETENTION_STREAM, [record], ANY, streams)
        assert isinstance(plan, list), "a retention record is always new"
        return plan[0].recorded(first)

    # ---- reads ------------------------------------------------------------------------

    async def _fetch(self, what: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one read; retried once, because a pooled connection may have gone stale
        (server restart) and a read is safe to repeat."""
        for attempt in (1, 2):
            try:
                async with self._pool.connection() as conn:
                    cur = await conn.execute(query.encode("utf-8"), params)
                    rows: list[tuple[Any, ...]] = await cur.fetchall()
                    return rows
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if attempt == 2 or self._closed:
                    raise unavailable(self.target, what, exc) from None
                log.warning("postgres read failed, retrying", url=self.url, error=str(exc))
        raise AssertionError("unreachable")

    async def _read_page(self, query: Query, after: int, limit: int) -> list[RecordedEvent]:
        where, params = _filters(query, after)
        order = "version" if query.stream is not None else "position"
        params["limit"] = limit
        text = (f"SELECT {_COLUMNS} FROM {EVENTS_TABLE} WHERE {' AND '.join(where)} "
                f"ORDER BY {order} LIMIT %(limit)s")
        return [_event(r) for r in await self._fetch("read failed", text, params)]

    async def _read_stream_page(
        self, stream: str, from_version: int, limit: int
    ) -> list[RecordedEvent]:
        rows = await self._fetch(
            f"reading stream {stream!r} failed",
            f"SELECT {_COLUMNS} FROM {EVENTS_TABLE} WHERE stream = %s AND version >= %s "
            "ORDER BY version LIMIT %s",
            (stream, from_version, limit),
        )
        return [_event(r) for r in rows]

    async def stream_version(self, stream: str) -> int | None:
        rows = await self._fetch(
            f"reading stream {stream!r} failed",
            f"SELECT max(version) FROM {EVENTS_TABLE} WHERE stream = %s", (stream,),
        )
        value = rows[0][0] if rows else None
        return None if value is None else int(value)

    async def head_position(self) -> int:
        rows = await self._fetch("reading the head failed", f"SELECT position FROM {HEAD_TABLE}")
        return int(rows[0][0]) if rows else 0

    async def streams(self, prefix: str | None = None) -> list[StreamInfo]:
        cond = "" if prefix is None else "WHERE stream LIKE %(prefix)s"
        rows = await self._fetch(
            "listing streams failed",
            "SELECT s.stream, s.n, s.last_version, e.hash, s.first_pos, s.last_pos, "
            "s.first_rec, s.last_rec FROM ("
            "  SELECT stream, count(*) AS n, max(version) AS last_version,"
            "  min(position) AS first_pos, max(position) AS last_pos,"
            "  min(recorded_at) AS first_rec, max(recorded_at) AS last_rec"
            f"  FROM {EVENTS_TABLE} {cond} GROUP BY stream) s "
            f"JOIN {EVENTS_TABLE} e ON e.stream = s.stream AND e.version = s.last_version "
            "ORDER BY s.first_pos",
            {"prefix": _like_prefix(prefix)} if prefix is not None else None,
        )
        return [
            StreamInfo(
                stream=name, count=int(n), last_version=int(lv), last_hash=str(h),
                first_position=int(fp), last_position=int(lp),
                first_recorded_at=fr.astimezone(UTC), last_recorded_at=lr.astimezone(UTC),
            )
            for name, n, lv, h, fp, lp, fr, lr in rows
        ]

    # ---- wake-ups ---------------------------------------------------------------------

    def _wake(self, position: int | None) -> None:
        if position is not None and position > self._seen_head:
            self._seen_head = position
        event, self._wakeup = self._wakeup, asyncio.Event()
        event.set()

    async def _wait_for_append(self, after: int, timeout: float) -> None:
        """Wait for a NOTIFY past ``after``; the timeout is the poll that always backs it."""
        if self._closed:
            await asyncio.sleep(timeout)
            return
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="orchestrail-pg-listen")
        if self._seen_head > after:
            return
        await wait_at_most(self._wakeup.wait(), timeout)

    async def _listen(self) -> None:
        """Hold a LISTEN connection; reconnect with backoff; never raise into waiters."""
        delay = 0.1
        while not self._closed:
            conn: psycopg.AsyncConnection[Any] | None = None
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.target.conninfo, autocommit=True, **self.target.kwargs
                )
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                delay = 0.1
                self._wake(None)  # anything committed while we were not listening
                async for note in conn.notifies():
                    try:
                        self._wake(int(note.payload))
                    except ValueError:
                        self._wake(None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closed:
                    return
                log.warning("postgres LISTEN connection lost; polling meanwhile",
                            url=self.url, error=" ".join(str(exc).split()), retry_in=delay)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def migrate(url: str) -> list[str]:
    """Apply pending schema migrations to the store at ``url``; return the applied names.

    For ``orchestrail store migrate`` and for deployments where the application role may
    not run DDL: run this once as the migration role, then open with ``create=False``.
    """
    target = Target.parse(url)
    conn = await connect(target)
    try:
        try:
            return await apply_pending(conn, target)
        except psycopg.Error as exc:
            raise unavailable(target, "migration failed (nothing was applied)", exc) from None
    finally:
        await conn.close()


__all__ = ["PostgresStore", "migrate"]
