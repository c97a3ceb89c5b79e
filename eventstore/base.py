"""The abstract store: the public API, implemented once over a few backend primitives.

A backend implements the ``_``-prefixed primitives (an atomic append, a filtered page
read, stream summaries, whole-stream removal) and inherits validation, redaction,
pagination, subscriptions, retention and verification from here, so every backend
behaves the same way and the contract suite (``eventstore.testing``) checks all of it.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import ClassVar

from eventstore.append import EncodedBatch, check_batch
from eventstore.canonical import use_fast_json
from eventstore.errors import InvalidEvent
from eventstore.model import (
    ANY,
    AppendResult,
    ExpectedVersion,
    NewEvent,
    Page,
    Query,
    RecordedEvent,
    StreamInfo,
    check_expected,
    check_stream,
)
from eventstore.redact import Redactor
from eventstore.retention import (
    RETENTION_STREAM,
    RETENTION_TYPE,
    RemovedStream,
    RetentionPolicy,
    RetentionReport,
    position_ranges,
    select_expired,
)
from eventstore.verify import VerifyReport, verify_store

MAX_PAGE = 10_000
READ_BATCH = 1_000


async def wait_at_most(awaitable: Awaitable[object], timeout: float) -> None:
    """Await ``awaitable`` for at most ``timeout`` seconds; running out is not an error.

    For the backends' ``_wait_for_append``. Not ``asyncio.wait_for``: on Python 3.11 it
    swallows a cancellation that arrives in the loop step where the awaited thing
    completes (a subscriber stopped the moment an append wakes it), and the subscription
    then polls forever. ``asyncio.timeout`` awaits in the caller's task, so the
    cancellation is delivered.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await awaitable


class EventStore(abc.ABC):
    """An append-only, hash-chained event log with streams, positions and subscriptions."""

    #: URL with any password masked; safe for logs.
    url: str = ""
    #: True when positions have no holes except those retention made (SQLite, JSONL, memory).
    gapless_positions: ClassVar[bool] = True

    def __init__(self, *, redactor: Redactor | None = None) -> None:
        self.redactor = redactor if redactor is not None else Redactor()
        use_fast_json()  # orjson for encoding and reads when installed (same bytes)

    # ---- primitives a backend implements -------------------------------------------

    @abc.abstractmethod
    async def _append(
        self, stream: str, events: Sequence[NewEvent], expected: ExpectedVersion
    ) -> AppendResult:
        """Atomically: idempotency check, expected-version check, hash, write (append.py)."""

    @abc.abstractmethod
    async def _read_page(self, query: Query, after: int, limit: int) -> list[RecordedEvent]:
        """Events matching ``query`` with position > ``after``, ascending, at most ``limit``."""

    @abc.abstractmethod
    async def _read_stream_page(
        self, stream: str, from_version: int, limit: int
    ) -> list[RecordedEvent]:
        """Events of one stream with version >= ``from_version``, ascending."""

    @abc.abstractmethod
    async def stream_version(self, stream: str) -> int | None:
        """The last version of ``stream``, or None when it does not exist."""

    @abc.abstractmethod
    async def head_position(self) -> int:
        """The highest position ever assigned (0 for an empty store)."""

    @abc.abstractmethod
    async def streams(self, prefix: str | None = None) -> list[StreamInfo]:
        """A summary of every stream (optionally under a prefix), by first position."""

    @abc.abstractmethod
    async def _remove_streams(self, streams: Sequence[str], record: NewEvent) -> RecordedEvent:
        """Retention only: append ``record`` to ``$retention`` and delete the streams.

        Transactional backends do both atomically. Others must write the record first, so
        a crash in between leaves a record naming a stream that still exists (harmless,
        re-run retention) rather than a gap nobody accounted for.
        """

    async def _append_many(
        self, batches: Sequence[tuple[str, Sequence[NewEvent], ExpectedVersion]]
    ) -> list[AppendResult]:
        """Several appends, as fast as the backend can; used by ``store copy``.

        Each batch keeps its own atomicity and checks. Backends with transactions override
        this to commit all batches at once (one fsync instead of one per batch); callers
        must not rely on all-or-nothing across batches, only on idempotent retries.
        """
        return [await self._append(s, evs, exp) for s, evs, exp in batches]

    async def _wait_for_append(self, after: int, timeout: float) -> None:
        """Block until something may have been appended past ``after`` (or timeout)."""
        await asyncio.sleep(timeout)

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and files."""

    # ---- public API -------------------------------------------------------------------

    async def append(
        self,
        stream: str,
        events: Iterable[NewEvent],
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        """Append events atomically to ``stream``. Secrets are redacted before hashing.

        Raises ``WrongExpectedVersion`` or ``DuplicateEventId`` with nothing written; a retry
        of a stored append (same ids, same place) returns the original ``AppendResult``.
        """
        check_stream(stream)
        check_expected(expected_version)
        batch = list(events)
        check_batch(batch)
        return await self._append(stream, self._encode(batch), expected_version)

    async def append_many(
        self, batches: Iterable[tuple[str, Iterable[NewEvent]]]
    ) -> list[AppendResult]:
        """Several appends ``(stream, events)``, in order, as fast as the backend can.

        Each batch is checked and redacted as by ``append`` (expected version ANY) and is
        atomic on its own; batches land in the given order, several for one stream too.
        SQLite and PostgreSQL commit many batches at once (one fsync), so bulk writers
        (``import claude-code``) are not one commit per batch. Not all-or-nothing across
        batches on every backend: after a failure, retry the same events (idempotent).
        """
        prepared: list[tuple[str, Sequence[NewEvent], ExpectedVersion]] = []
        for stream, events in batches:
            check_stream(stream)
            batch = list(events)
            check_batch(batch)
            prepared.append((stream, self._encode(batch), ANY))
        return await self._append_many(prepared) if prepared else []

    def _encode(self, batch: list[NewEvent]) -> EncodedBatch:
        """Redact every event and keep the canonical JSON of its payloads for hashing."""
        redactor = self.redactor
        pairs = redactor.encode_many([event.data for event in batch])
        events: list[NewEvent] = []
        texts: list[tuple[str, str]] = []
        for event, (data, data_json) in zip(batch, pairs, strict=True):
            metadata = event.metadata
            if metadata:  # most events have none: what encode({}) returns, without the call
                metadata, metadata_json = redactor.encode(metadata)
            else:
                metadata_json = "{}"
            if data is not event.data or metadata is not event.metadata:
                event = event.model_copy(update={"data": data, "metadata": metadata})
            events.append(event)
            texts.append((data_json, metadata_json))
        return EncodedBatch(events, texts)

    async def read_stream(
        self, stream: str, from_version: int = 0, *, limit: int | None = None
    ) -> AsyncIterator[RecordedEvent]:
        """One stream's events in version order."""
        check_stream(stream, allow_reserved=True)
        if from_version < 0:
            raise InvalidEvent(f"from_version must be >= 0, got {from_version}")
        left = limit
        version = from_version
        while left is None or left > 0:
            size = READ_BATCH if left is None else min(READ_BATCH, left)
            batch = await self._read_stream_page(stream, version, size)
            for ev in batch:
                yield ev
            if len(batch) < size:
                return
            version = batch[-1].version + 1
            if left is not None:
                left -= len(batch)

    async def read(self, query: Query | None = None, after: int | None = None
                   ) -> AsyncIterator[RecordedEvent]:
        """Every matching event in global (position) order, after the cursor."""
        query = query or Query()
        cursor = after or 0
        while True:
            batch = await self._read_page(query, cursor, READ_BATCH)
            for ev in batch:
                yield ev
            if len(batch) < READ_BATCH:
                return
            cursor = batch[-1].position

    async def read_page(
        self, query: Query | None = None, after: int | None = None, limit: int = 100
    ) -> Page:
        """One page by cursor: pass ``page.next_cursor`` as ``after`` for the next one."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidEvent(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
        if after is not None and after < 0:
            raise InvalidEvent(f"cursor must be a position >= 0, got {after}")
        events = await self._read_page(query or Query(), after or 0, limit)
        nxt = events[-1].position if len(events) == limit else None
        return Page(events=events, next_cursor=nxt)

    async def subscribe(
        self,
        query: Query | None = None,
        after: int | None = None,
        *,
        poll_interval: float = 0.25,
    ) -> AsyncIterator[RecordedEvent]:
        """Catch up from ``after``, then wait for new events; runs until the caller stops.

        Positions are assigned in commit order by every backend with
        ``gapless_positions``, so following the position cursor never skips an event that
        commits after the subscription started. Backends with a wake-up signal override
        ``_wait_for_append``; the poll interval is always the fallback.
        """
        query = query or Query()
        cursor = after or 0
        task = asyncio.current_task()
        while True:
            if task is not None and task.cancelling():
                # Stopped, but something below swallowed the CancelledError (on Python
                # 3.11 asyncio.wait_for does when the cancel meets the completion, and
                # psycopg_pool waits for a connection with it): end, do not poll forever.
                raise asyncio.CancelledError
            # Everything up to ``horizon`` is committed, so the read below sees all of it;
            # waiting past the horizon (not just past the last match) keeps a filtered
            # subscription from spinning on a tail of events it does not want.
            horizon = await self.head_position()
            batch = await self._read_page(query, cursor, READ_BATCH)
            for ev in batch:
                cursor = ev.position
                yield ev
            if len(batch) < READ_BATCH:
                await self._wait_for_append(max(cursor, horizon), poll_interval)

    async def last_event(self, stream: str) -> RecordedEvent | None:
        version = await self.stream_version(stream)
        if version is None:
            return None
        batch = await self._read_stream_page(stream, version, 1)
        return batch[0] if batch else None

    async def unfinished_runs(self) -> set[str]:
        """Correlation ids of runs with ``run.started`` and no ``run.finished``."""
        started: set[str] = set()
        finished: set[str] = set()
        async for ev in self.read(Query(types=("run.started", "run.finished"))):
            if ev.correlation_id:
                (started if ev.type == "run.started" else finished).add(ev.correlation_id)
        return started - finished

    async def apply_retention(
        self, policy: RetentionPolicy, dry_run: bool = True, *, now: datetime | None = None
    ) -> RetentionReport:
        """Remove whole streams the policy expires; record the removal in ``$retention``."""
        now = now or datetime.now(UTC)
        protected: set[str] = set()
        for run_id in await self.unfinished_runs():
            protected.add(f"run-{run_id}")
            async for ev in self.read(Query(correlation_id=run_id)):
                protected.add(ev.stream)
        infos = await self.streams()
        candidates = [] if policy.infinite else select_expired(infos, policy, protected, now)
        would_be = (
            select_expired(infos, policy, set(), now) if not policy.infinite else []
        )
        held = sorted({s.stream for s in would_be} & protected)
        removed: list[RemovedStream] = []
        for info in candidates:
            positions = [ev.position async for ev in self.read_stream(info.stream)]
            removed.append(
                RemovedStream(
                    stream=info.stream,
                    count=info.count,
                    last_version=info.last_version,
                    last_hash=info.last_hash,
                    positions=position_ranges(positions),
                )
            )
        record = None
        if removed and not dry_run:
            event = NewEvent(
                type=RETENTION_TYPE,
                actor="orchestrator",
                occurred_at=now,
                data={
                    "policy": policy.describe(),
                    "removed": [r.model_dump(mode="json") for r in removed],
                    "protected_unfinished": held,
                },
            )
            record = await self._remove_streams([r.stream for r in removed], event)
        return RetentionReport(
            dry_run=dry_run,
            policy=policy.describe(),
            removed=removed,
            protected_unfinished=held,
            events_removed=sum(r.count for r in removed),
            record=record,
        )

    async def verify(self) -> VerifyReport:
        """Recompute every chain; see ``eventstore.verify``."""
        return await verify_store(self)

    async def __aenter__(self) -> EventStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


__all__ = ["RETENTION_STREAM", "EventStore"]
