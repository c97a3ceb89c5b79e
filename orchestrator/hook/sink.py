"""Appending hook events: a stdlib ``sqlite3`` fast path, and the full store for the rest.

The fast path writes exactly what ``eventstore.backends.sqlite`` writes: the same file
checks and schema (``sqlite_schema``), the same canonical JSON and hash chain
(``eventstore.canonical``), the same redaction (``eventstore.redact``), inside one
``BEGIN IMMEDIATE`` transaction, so concurrent hook processes (Claude Code runs matching
hooks in parallel) serialize on SQLite's write lock and every chain stays intact. It
skips pydantic, aiosqlite and asyncio, which is most of a cold start.

Idempotency: an event whose id is already stored is skipped. Ids are derived (see
``mapping``), so delivering a spooled hook again writes nothing new.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from eventstore.canonical import (
    actor_problem,
    canonical_json,
    chain_hash_parts,
    format_ts,
    stream_name_problem,
    type_problem,
)
from eventstore.redact import Redactor
from orchestrator.hook.mapping import Ev, Lookup, Mapper, error_events
from orchestrator.hook.target import Target

#: How long a hook waits for another process's write lock before it spools instead.
DEFAULT_BUSY_MS = 2_000

_DUMP = json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=str).encode


class Item:
    """One hook invocation: its stdin, a key its event ids derive from, when it fired."""

    __slots__ = ("key", "raw", "received_at")

    def __init__(self, raw: bytes, key: str, received_at: str) -> None:
        self.raw = raw
        self.key = key
        self.received_at = received_at


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse(raw: bytes) -> dict[str, Any]:
    """The hook JSON, or ValueError saying what is wrong with it."""
    if not raw.strip():
        raise ValueError("empty stdin: Claude Code sends one JSON object per hook")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"stdin is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ValueError(f"stdin is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"hook JSON must be an object, got {type(value).__name__}")
    return value


def plan_item(item: Item, lookup: Lookup) -> list[Ev]:
    """Events for one invocation; anything unexpected becomes a ``claude.hook.error``."""
    payload: dict[str, Any] | None = None
    try:
        payload = parse(item.raw)
        events = Mapper(payload, item.key, lookup, _DUMP).run()
        for ev in events:
            problem = (stream_name_problem(ev.stream) or type_problem(ev.type)
                       or actor_problem(ev.actor))
            if problem:
                raise ValueError(problem)
            canonical_json(ev.data)  # refuses what JSON cannot hold, before anything is written
        return events
    except Exception as exc:  # never let a payload break Claude Code: record it instead
        return error_events(f"{type(exc).__name__}: {exc}", item.raw, item.key, payload)


def make_redactor(target: Target) -> Redactor:
    return Redactor(target.redact_patterns, enabled=target.redact_enabled)


class SqliteLookup:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def exists(self, event_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM events WHERE id = ?", (event_id,)
                                 ).fetchone() is not None

    def recent(self, stream: str, type_: str, limit: int) -> list[tuple[str, dict[str, Any]]]:
        rows = self.conn.execute(
            "SELECT id, data FROM events WHERE stream = ? AND type = ? "
            "ORDER BY version DESC LIMIT ?", (stream, type_, limit)).fetchall()
        return [(r[0], json.loads(r[1])) for r in rows]


def deliver_sqlite(target: Target, items: Sequence[Item], busy_ms: int) -> int:
    """Append every item's events in one write transaction; return how many were new."""
    from eventstore.backends.sqlite_schema import (
        INSERT_SQL,
        Settings,
        check_path,
        connect,
        ensure_schema,
    )

    path, params = target.sqlite_path()
    params.setdefault("busy_timeout", str(busy_ms))
    settings = Settings(path, params)
    check_path(path, create=True)
    conn = connect(path, settings)
    try:
        ensure_schema(conn, path, settings, create=True)
        redactor = make_redactor(target)
        lookup = SqliteLookup(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            found = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'"
                                 ).fetchone()
            position = int(found[0]) if found else 0
            heads: dict[str, tuple[int, str | None]] = {}
            written = 0
            recorded = format_ts(datetime.now(UTC))
            for item in items:
                for ev in plan_item(item, lookup):
                    if lookup.exists(ev.id):
                        continue
                    head = heads.get(ev.stream)
                    if head is None:
                        row = conn.execute(
                            "SELECT version, hash FROM events WHERE stream = ? "
                            "ORDER BY version DESC LIMIT 1", (ev.stream,)).fetchone()
                        head = (row[0], row[1]) if row else (-1, None)
                    position += 1
                    params_, new_hash = _row(ev, head, position, item.received_at,
                                             recorded, redactor)
                    conn.execute(INSERT_SQL, params_)
                    heads[ev.stream] = (head[0] + 1, new_hash)
                    written += 1
            conn.execute("COMMIT")
            return written
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()


def _row(ev: Ev, head: tuple[int, str | None], position: int, occurred: str, recorded: str,
         redactor: Redactor) -> tuple[tuple[Any, ...], str]:
    version = head[0] + 1
    data_json = canonical_json(redactor.redact(ev.data))
    meta_json = canonical_json(redactor.redact(ev.metadata))
    h = chain_hash_parts(
        id=ev.id, stream=ev.stream, version=version, type=ev.type, data_json=data_json,
        metadata_json=meta_json, actor=ev.actor, correlation_id=ev.correlation_id,
        causation_id=ev.causation_id, occurred_at=occurred, prev_hash=head[1])
    return ((position, ev.id, ev.stream, version, ev.type, ev.actor, ev.correlation_id,
             ev.causation_id, occurred, recorded, data_json, meta_json, head[1], h), h)


class _SnapshotLookup:
    """For the slow path: the streams a payload touches, read once before mapping."""

    def __init__(self, events: dict[str, list[Any]]) -> None:
        self.ids = {e.id for evs in events.values() for e in evs}
        self.events = events

    def exists(self, event_id: str) -> bool:
        return event_id in self.ids

    def recent(self, stream: str, type_: str, limit: int) -> list[tuple[str, dict[str, Any]]]:
        found = [(e.id, dict(e.data)) for e in reversed(self.events.get(stream, []))
                 if e.type == type_]
        return found[:limit]


def deliver_store(target: Target, items: Sequence[Item], timeout_s: float) -> int:
    """Any other backend through ``eventstore.open_store`` (slower: pydantic, a driver)."""
    import asyncio

    return asyncio.run(asyncio.wait_for(_deliver_store(target, items), timeout_s))


async def _deliver_store(target: Target, items: Sequence[Item]) -> int:
    from datetime import datetime as dt

    from eventstore.config import Config
    from eventstore.model import NewEvent
    from eventstore.urls import open_store

    cfg = Config(root=target.root)
    store = await open_store(target.url, config=cfg, redactor=make_redactor(target))
    written = 0
    try:
        for item in items:
            payload: dict[str, Any] = {}
            try:
                payload = parse(item.raw)
            except ValueError:
                pass
            sid = payload.get("session_id")
            agent = payload.get("agent_id")
            streams = [f"run-{sid}", f"session-{sid}"] + ([f"session-{agent}"] if agent else [])
            snapshot: dict[str, list[Any]] = {}
            for s in streams:
                if stream_name_problem(s) is None:
                    snapshot[s] = [e async for e in store.read_stream(s)]
            lookup = _SnapshotLookup(snapshot)
            occurred = dt.fromisoformat(item.received_at.replace("Z", "+00:00"))
            by_stream: dict[str, list[NewEvent]] = {}
            for ev in plan_item(item, lookup):
                if lookup.exists(ev.id):
                    continue
                by_stream.setdefault(ev.stream, []).append(NewEvent(
                    id=ev.id, type=ev.type, data=ev.data, actor=ev.actor,
                    correlation_id=ev.correlation_id, causation_id=ev.causation_id,
                    metadata=ev.metadata, occurred_at=occurred))
            for stream, evs in by_stream.items():
                await store.append(stream, evs)
                written += len(evs)
    finally:
        await store.close()
    return written


def deliver(target: Target, items: Sequence[Item], *, busy_ms: int = DEFAULT_BUSY_MS) -> int:
    if target.scheme == "sqlite":
        return deliver_sqlite(target, items, busy_ms)
    return deliver_store(target, items, timeout_s=max(1.0, busy_ms / 1000 * 2.5))


def warn(message: str) -> None:
    """stderr only: Claude Code shows hook stderr in its debug log, never to the model."""
    try:
        sys.stderr.write(f"orchestrail hook: {message}\n")
    except Exception:
        pass
