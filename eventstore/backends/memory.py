"""``memory://``: an in-process store for tests and examples; also the reference backend.

Everything lives in Python lists guarded by an asyncio lock. ``memory://NAME`` returns
the same store for the same name within a process, so two components of one test can
share it; plain ``memory://`` is always a fresh store.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections.abc import Sequence
from datetime import UTC, datetime

from eventstore.append import Existing, Head, plan_append, result_of
from eventstore.base import EventStore, wait_at_most
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


class MemoryStore(EventStore):
    def __init__(self, *, url: str = "memory://", redactor: Redactor | None = None) -> None:
        super().__init__(redactor=redactor)
        self.url = url
        self._log: list[RecordedEvent] = []
        self._positions: list[int] = []
        self._streams: dict[str, list[RecordedEvent]] = {}
        self._ids: dict[str, Existing] = {}
        self._head = 0
        self._lock = asyncio.Lock()
        self._changed = asyncio.Condition()

    async def _append(
        self, stream: str, events: Sequence[NewEvent], expected: ExpectedVersion
    ) -> AppendResult:
        return await self._append_any(stream, events, expected)

    async def _append_any(
        self, stream: str, events: Sequence[NewEvent], expected: ExpectedVersion
    ) -> AppendResult:
        async with self._lock:
            existing = {e.id: self._ids[e.id] for e in events if e.id in self._ids}
            current = self._streams.get(stream)
            head = Head(current[-1].version, current[-1].hash) if current else None
            plan = plan_append(stream, events, expected, head, existing, datetime.now(UTC))
            if isinstance(plan, AppendResult):
                return plan
            first = self._head + 1
            recorded = [row.recorded(first + i) for i, row in enumerate(plan)]
            self._head += len(recorded)
            self._log.extend(recorded)
            self._positions.extend(r.position for r in recorded)
            self._streams.setdefault(stream, []).extend(recorded)
            for r in recorded:
                self._ids[r.id] = Existing(r.stream, r.version, r.position)
        async with self._changed:
            self._changed.notify_all()
        return result_of(stream, plan, first)

    async def _read_page(self, query: Query, after: int, limit: int) -> list[RecordedEvent]:
        source: list[RecordedEvent]
        if query.stream is not None:
            source = [e for e in self._streams.get(query.stream, []) if e.position > after]
        else:
            source = self._log[bisect_right(self._positions, after):]
        out: list[RecordedEvent] = []
        for ev in source:
            if query.matches(ev):
                out.append(ev)
                if len(out) >= limit:
                    break
        return out

    async def _read_stream_page(
        self, stream: str, from_version: int, limit: int
    ) -> list[RecordedEvent]:
        events = self._streams.get(stream, [])
        return events[from_version: from_version + limit]

    async def stream_version(self, stream: str) -> int | None:
        events = self._streams.get(stream)
        return events[-1].version if events else None

    async def head_position(self) -> int:
        return self._head

    async def streams(self, prefix: str | None = None) -> list[StreamInfo]:
        out = []
        for name, evs in self._streams.items():
            if not evs or (prefix is not None and not name.startswith(prefix)):
                continue
            out.append(
                StreamInfo(
                    stream=name, count=len(evs), last_version=evs[-1].version,
                    last_hash=evs[-1].hash, first_position=evs[0].position,
                    last_position=evs[-1].position, first_recorded_at=evs[0].recorded_at,
                    last_recorded_at=evs[-1].recorded_at,
                )
            )
        return sorted(out, key=lambda s: s.first_position)

    async def _remove_streams(self, streams: Sequence[str], record: NewEvent) -> RecordedEvent:
        result = await self._append_any(RETENTION_STREAM, [record], ANY)
        async with self._lock:
            doomed = set(streams)
            for name in doomed:
                for ev in self._streams.pop(name, []):
                    self._ids.pop(ev.id, None)
            self._log = [e for e in self._log if e.stream not in doomed]
            self._positions = [e.position for e in self._log]
        return self._streams[RETENTION_STREAM][result.last_version]

    async def _wait_for_append(self, after: int, timeout: float) -> None:
        if self._head > after:
            return
        async with self._changed:
            await wait_at_most(self._changed.wait_for(lambda: self._head > after), timeout)


_NAMED: dict[str, MemoryStore] = {}


def named_memory_store(name: str, *, redactor: Redactor | None = None) -> MemoryStore:
    """``memory://NAME``: one shared store per name in this process."""
    store = _NAMED.get(name)
    if store is None:
        store = _NAMED[name] = MemoryStore(url=f"memory://{name}", redactor=redactor)
    return store
