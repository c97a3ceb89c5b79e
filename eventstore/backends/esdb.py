"""``esdb://`` / ``kurrentdb://``: the store on EventStoreDB or KurrentDB, via esdbclient.

For teams that already run EventStoreDB: our streams are its streams, our events its
events (data = the canonical JSON the hash covers; our envelope in the metadata, see
``esdb_codec``), and our global position is its commit position. What EventStoreDB gives
natively is used as is: per-stream atomic appends with expected revisions, idempotency by
event id, ``$all`` in commit order, server-side regex filters, catch-up subscriptions,
soft deletes.

What it does not give, and how this backend makes up for it (the limits are real, and
listed in docs/backends.md):

- **Hash chains need the stream head.** Every append reads the stream's last event,
  plans with ``plan_append`` and appends with the exact ESDB revision it read. If anyone
  appended in between, ESDB answers ``WrongCurrentVersion`` and we re-plan from the new
  head (for ``ANY``/``EXISTS``) or report ``WrongExpectedVersion`` (for an exact or
  ``NO_STREAM`` expectation). So chains stay linear across processes and machines.
- **Event ids are unique store-wide in our contract, per stream in ESDB.** Each store
  object keeps an index of every event id, built by reading ``$all`` once (on the first
  append) and then only the new tail before each append. Cost: one full ``$all`` scan per
  process that appends, and memory for every id. Limit: two processes appending the SAME
  id to DIFFERENT streams at the same moment can both succeed (there is no cross-stream
  transaction before KurrentDB 25.1); the same id to the same stream is still caught by
  ESDB's own idempotency check.
- **Positions are commit positions**: rising, not gapless (``gapless_positions =
  False``), so ``verify`` checks their order but cannot detect a removed event by a hole
  in the positions; per-stream versions are gapless and still checked.
- **Retention** soft-deletes whole streams after writing the ``$retention`` record (no
  cross-stream transaction). A soft-deleted stream's events stay in ``$all`` until the
  server scavenges, so global reads skip the positions every retention record lists.
- **Subscriptions** poll ``read_all`` pages with a ``subscribe_to_all`` from the end as a
  wake-up signal (so a subscriber filters exactly like ``read``); the poll interval is
  the fallback when the wake-up stream breaks.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

import structlog
from esdbclient import AsyncEventStoreDBClient, StreamState
from esdbclient import NewEvent as EsdbNewEvent
from esdbclient.exceptions import (
    EventStoreDBClientException,
    NotFound,
    StreamIsDeleted,
    WrongCurrentVersion,
)

from eventstore.append import Existing, Head, plan_append
from eventstore.backends.esdb_codec import (
    Names,
    Target,
    decode,
    encode_metadata,
    esdb_id,
    namespace_filter,
    server_filter,
)
from eventstore.base import EventStore, wait_at_most
from eventstore.errors import ConfigError, StoreError, StoreUnavailable
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
from eventstore.retention import RETENTION_STREAM, RETENTION_TYPE

CHUNK = 1_000
MAX_ATTEMPTS = 100


def _log() -> Any:
    """A logger on stderr unless structlog is configured (stdout belongs to the program)."""
    if structlog.is_configured():
        return structlog.get_logger("eventstore.esdb")
    return structlog.wrap_logger(
        structlog.PrintLogger(sys.stderr),
        processors=[structlog.processors.add_log_level,
                    structlog.dev.ConsoleRenderer(colors=False)],
    )


def _reraise_cancel() -> None:
    """esdbclient turns a cancelled read into a normal end of iteration (it raises
    ``CancelledByClient`` and then ``StopAsyncIteration``), so a cancelled task would carry on
    with a partial result. Call this after every read: it puts the cancellation back."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class _IdIndex:
    """Every event id of the store -> where it is; caught up from ``$all`` on demand."""

    def __init__(self) -> None:
        self.ids: dict[str, Existing] = {}
        self.by_stream: dict[str, list[str]] = {}
        self.position = 0  # the last $all commit position looked at (0: none yet)

    def add(self, ev: RecordedEvent) -> None:
        self.ids[ev.id] = Existing(ev.stream, ev.version, ev.position)
        self.by_stream.setdefault(ev.stream, []).append(ev.id)

    def drop(self, stream: str, ranges: Sequence[tuple[int, int]] | None = None) -> None:
        """Forget a removed stream's ids (only those at the listed positions, if given)."""
        keep = []
        for event_id in self.by_stream.pop(stream, []):
            where = self.ids.get(event_id)
            if where is None or where.stream != stream:
                continue
            if ranges is None or any(a <= where.position <= b for a, b in ranges):
                del self.ids[event_id]
            else:
                keep.append(event_id)
        if keep:
            self.by_stream[stream] = keep

    def apply(self, ev: RecordedEvent) -> None:
        self.add(ev)
        if ev.stream == RETENTION_STREAM and ev.type == RETENTION_TYPE:
            for item in ev.data.get("removed", []):
                ranges = [(int(a), int(b)) for a, b in item.get("positions", [])]
                self.drop(str(item.get("stream")), ranges)


class EsdbStore(EventStore):
    """The store on an EventStoreDB/KurrentDB server (see the module docstring)."""

    gapless_positions = False

    def __init__(self, client: AsyncEventStoreDBClient, target: Target, *,
                 redactor: Redactor | None = None) -> None:
        super().__init__(redactor=redactor)
        self.url = target.masked
        self._client = client
        self._target = target
        self._names = Names(target.namespace)
        self._timeout = target.timeout
        self._lock = asyncio.Lock()
        self._index: _IdIndex | None = None
        self._removed: list[tuple[int, int]] = []  # sorted position ranges, from $retention
        self._removed_next = 0  # the next $retention version to read
        self._wake = asyncio.Condition()
        self._generation = 0
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False

    # ---- opening and errors -------------------------------------------------------------

    @classmethod
    async def open(cls, url: str, *, redactor: Redactor | None = None,
                   create: bool = True) -> EsdbStore:
        """Connect and probe the server within ``connectTimeout`` seconds (default 5).

        ``create`` is accepted for symmetry: an ESDB store has nothing to create (streams
        appear on first append). Raises ``StoreUnavailable`` when the server cannot be
        reached, ``ConfigError`` for a malformed URL. The URL in messages is masked.
        """
        target = Target.parse(url)
        try:
            client = AsyncEventStoreDBClient(target.client_uri)
        except (ValueError, EventStoreDBClientException) as exc:
            raise ConfigError(f"store URL {target.masked!r}: {exc}") from None
        try:
            async with asyncio.timeout(target.connect_timeout):
                await client.connect()
                await client.get_commit_position(timeout=target.connect_timeout)
        except (TimeoutError, EventStoreDBClientException, OSError) as exc:
            with contextlib.suppress(Exception):
                await client.close()
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no answer"
            raise StoreUnavailable(
                f"EventStoreDB at {target.masked} is unreachable "
                f"(waited {target.connect_timeout:g}s): {type(exc).__name__}: {reason}"
            ) from None
        return cls(client, target, redactor=redactor)

    def _unavailable(self, doing: str, exc: BaseException) -> NoReturn:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreUnavailable(
            f"EventStoreDB at {self.url}: {doing} failed: {type(exc).__name__}: {reason}"
        ) from None

    async def close(self) -> None:
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(BaseException):
                await self._watcher
        with contextlib.suppress(Exception):
            await self._client.close()

    # ---- raw reads --------------------------------------------------------------------------

    async def _raw_stream(self, esdb_name: str, *, position: int | None = None,
                          backwards: bool = False, limit: int = CHUNK) -> list[Any]:
        """Raw records of one ESDB stream; [] when it does not exist or was deleted."""
        try:
            records = list(await self._client.get_stream(
                esdb_name, stream_position=position, backwards=backwards, limit=limit,
                timeout=self._timeout))
            _reraise_cancel()
            return records
        except NotFound:
            return []
        except StreamIsDeleted:
            return []
        except EventStoreDBClientException as exc:
            self._unavailable(f"reading stream {esdb_name!r}", exc)

    async def _raw_all(self, after: int, limit: int, filt: dict[str, Any],
                       backwards: bool = False) -> list[Any]:
        """Raw ``$all`` records after (or, backwards, before) a commit position."""
        try:
            resp = await self._client.read_all(
                commit_position=after or None, backwards=backwards, limit=limit,
                timeout=self._timeout, **filt)
            records = [e async for e in resp]
            _reraise_cancel()
            return records
        except EventStoreDBClientException as exc:
            self._unavailable("reading $all", exc)

    async def _last(self, stream: str) -> tuple[RecordedEvent, int] | None:
        """The stream's last event and its ESDB revision, or None (no stream / deleted)."""
        raws = await self._raw_stream(self._names.to_esdb(stream), backwards=True, limit=1)
        if not raws:
            return None
        ev = decode(raws[0], self._names)
        if ev is None:
            raise StoreError(f"EventStoreDB at {self.url}: stream {stream!r} holds events "
                             "that were not written by orchestrail; refusing to append")
        return ev, raws[0].stream_position

    async def _base(self, stream: str) -> int:
        """The ESDB revision version 0 gets: after a soft delete, revisions continue."""
        try:
            meta, _ = await self._client.get_stream_metadata(
                self._names.to_esdb(stream), timeout=self._timeout)
        except EventStoreDBClientException as exc:
            self._unavailable(f"reading metadata of {stream!r}", exc)
        tb = meta.get("$tb", 0) if isinstance(meta, dict) else 0
        return int(tb) if isinstance(tb, int) else 0

    # ---- append -----------------------------------------------------------------------------

    async def _catch_up(self) -> _IdIndex:
        index = self._index or _IdIndex()
        filt = namespace_filter(self._names)
        while True:
            raws = await self._raw_all(index.position, CHUNK, filt)
            fresh = [r for r in raws if r.commit_position > index.position]
            for raw in fresh:
                ev = decode(raw, self._names)
                if ev is not None:
                    index.apply(ev)
            if fresh:
                index.position = fresh[-1].commit_position
            if len(raws) < CHUNK:
                break
        self._index = index
        return index

    async def _append(self, stream: str, events: Sequence[NewEvent],
                      expected: ExpectedVersion) -> AppendResult:
        esdb_name = self._names.to_esdb(stream)
        async with self._lock:
            for _ in range(MAX_ATTEMPTS):
                index = await self._catch_up()
                last = await self._last(stream)
                current: int | StreamState
                if last is None:
                    head, base, current = None, await self._base(stream), StreamState.NO_STREAM
                else:
                    ev, revision = last
                    head = Head(ev.version, ev.hash)
                    base, current = revision - ev.version, revision
                existing = {e.id: index.ids[e.id] for e in events if e.id in index.ids}
                plan = plan_append(stream, events, expected, head, existing, datetime.now(UTC))
                if isinstance(plan, AppendResult):
                    return plan
                new = [
                    EsdbNewEvent(type=row.type, data=row.data_json.encode("utf-8"),
                                 metadata=encode_metadata(row, base),
                                 content_type="application/json", id=esdb_id(row.id))
                    for row in plan
                ]
                try:
                    await self._client.append_to_stream(
                        esdb_name, current_version=current, events=new, timeout=self._timeout)
                except WrongCurrentVersion:
                    continue  # someone appended since we read the head: plan again
                except StreamIsDeleted:
                    raise StoreError(
                        f"EventStoreDB at {self.url}: stream {stream!r} was tombstoned "
                        "(hard-deleted); its name cannot be written again") from None
                except EventStoreDBClientException as exc:
                    self._unavailable(
                        f"appending {len(plan)} events to {stream!r} (the append may or may "
                        "not have happened; retrying the same call is safe: it is idempotent)",
                        exc)
                # Our events' positions: catching the id index up reads them from $all
                # (and the next append then has nothing left to read).
                index = await self._catch_up()
                where = [index.ids.get(row.id) for row in plan]
                if any(w is None or w.stream != stream for w in where):
                    raise StoreError(f"EventStoreDB at {self.url}: appended to {stream!r} "
                                     "but could not find the events in $all afterwards")
                first, final = where[0], where[-1]
                assert first is not None and final is not None
                return AppendResult(stream=stream, first_version=first.version,
                                    last_version=final.version,
                                    first_position=first.position,
                                    last_position=final.position)
            raise StoreUnavailable(
                f"EventStoreDB at {self.url}: stream {stream!r} changed under "
                f"{MAX_ATTEMPTS} append attempts in a row; giving up")

    # ---- reads -------------------------------------------------------------------------------

    async def _refresh_removed(self) -> None:
        """Load new ``$retention`` records: their positions are hidden from global reads."""
        records = await self._read_stream_page(RETENTION_STREAM, self._removed_next, CHUNK)
        while records:
            for rec in records:
                if rec.type == RETENTION_TYPE:
                    for item in rec.data.get("removed", []):
                        for a, b in item.get("positions", []):
                            bisect.insort(self._removed, (int(a), int(b)))
                self._removed_next = rec.version + 1
            if len(records) < CHUNK:
                break
            records = await self._read_stream_page(RETENTION_STREAM, self._removed_next, CHUNK)

    def _is_removed(self, position: int) -> bool:
        i = bisect.bisect_right(self._removed, (position, sys.maxsize)) - 1
        return i >= 0 and self._removed[i][0] <= position <= self._removed[i][1]

    async def _read_page(self, query: Query, after: int, limit: int) -> list[RecordedEvent]:
        await self._refresh_removed()
        filt = server_filter(query, self._names)
        out: list[RecordedEvent] = []
        cursor = after
        chunk = min(max(limit, 100), CHUNK)
        while len(out) < limit:
            raws = await self._raw_all(cursor, chunk, filt)
            for raw in raws:
                if raw.commit_position <= cursor:
                    continue  # reading from a position includes the event at it
                cursor = raw.commit_position
                ev = decode(raw, self._names)
                if ev is None or self._is_removed(ev.position) or not query.matches(ev):
                    continue
                out.append(ev)
                if len(out) >= limit:
                    break
            if len(raws) < chunk:
                break
        return out

    async def _read_stream_page(self, stream: str, from_version: int, limit: int
                                ) -> list[RecordedEvent]:
        esdb_name = self._names.to_esdb(stream)
        if from_version == 0:
            raws = await self._raw_stream(esdb_name, limit=limit)
        else:
            first = await self._raw_stream(esdb_name, limit=1)
            if not first:
                return []
            ev = decode(first[0], self._names)
            if ev is None:
                return []
            base = first[0].stream_position - ev.version
            raws = await self._raw_stream(esdb_name, position=base + from_version, limit=limit)
        out = []
        for raw in raws:
            ev = decode(raw, self._names)
            if ev is not None:
                out.append(ev)
        return out

    async def stream_version(self, stream: str) -> int | None:
        last = await self._last(stream)
        return None if last is None else last[0].version

    async def head_position(self) -> int:
        """The commit position of this store's last event in ``$all`` (0 when none)."""
        filt = namespace_filter(self._names)
        before = 0
        while True:
            raws = await self._raw_all(before, 100, filt, backwards=True)
            for raw in raws:
                if decode(raw, self._names) is not None:
                    return int(raw.commit_position)
            if len(raws) < 100:
                return 0
            before = raws[-1].commit_position

    async def streams(self, prefix: str | None = None) -> list[StreamInfo]:
        """One pass over ``$all`` (server-filtered by prefix): cost grows with the store."""
        seen: dict[str, list[RecordedEvent]] = {}
        async for ev in self.read(Query(stream_prefix=prefix)):
            pair = seen.setdefault(ev.stream, [ev, ev])
            pair[1] = ev
        return [
            StreamInfo(stream=name, count=last.version - first.version + 1,
                       last_version=last.version, last_hash=last.hash,
                       first_position=first.position, last_position=last.position,
                       first_recorded_at=first.recorded_at, last_recorded_at=last.recorded_at)
            for name, (first, last) in seen.items()
        ]

    # ---- retention ---------------------------------------------------------------------------

    async def _remove_streams(self, streams: Sequence[str], record: NewEvent) -> RecordedEvent:
        """Write the record, then soft-delete each stream at the revision it had then."""
        result = await self._append(RETENTION_STREAM, [record], ANY)
        async with self._lock:
            for stream in streams:
                for _ in range(MAX_ATTEMPTS):
                    last = await self._last(stream)
                    if last is None:
                        break
                    try:
                        await self._client.delete_stream(
                            self._names.to_esdb(stream), current_version=last[1],
                            timeout=self._timeout)
                        break
                    except WrongCurrentVersion:
                        continue
                    except (NotFound, StreamIsDeleted):
                        break
                    except EventStoreDBClientException as exc:
                        self._unavailable(f"deleting stream {stream!r} (the $retention "
                                          "record is written; re-run retention)", exc)
                if self._index is not None:
                    self._index.drop(stream)
        recorded = await self._read_stream_page(RETENTION_STREAM, result.last_version, 1)
        return recorded[0]

    # ---- wake-ups for subscribers ---------------------------------------------------------

    async def _watch(self) -> None:
        """Follow ``$all`` from its end; every new event of this store bumps a generation."""
        while not self._closed:
            try:
                sub = await self._client.subscribe_to_all(
                    from_end=True, timeout=None, **namespace_filter(self._names))
                async with sub:
                    async for _ in sub:
                        async with self._wake:
                            self._generation += 1
                            self._wake.notify_all()
                _reraise_cancel()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the poll keeps subscribers going meanwhile
                if not self._closed:
                    _log().warning("esdb wake-up subscription failed; polling",
                                   url=self.url, error=f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(1.0)

    async def _wait_for_append(self, after: int, timeout: float) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch())
        async with self._wake:
            start = self._generation
            await wait_at_most(self._wake.wait_for(lambda: self._generation != start),
                               timeout)
