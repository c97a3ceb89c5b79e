"""The contract suite every backend runs by subclassing: one behaviour, many engines.

Why one suite: the store's promises (gapless versions, commit-ordered positions,
idempotent retries, atomic batches, subscriptions that miss nothing, retention that
verify can account for, crash safety) are what callers rely on, whatever the URL says.
Writing them once, as the eventsourcing library does with its recorder test cases, means
a backend cannot quietly drift from the others.

How a backend uses it (``tests/contract/test_<backend>.py``)::

    class TestSQLiteStore(StoreContract, MultiProcessContract):
        @pytest.fixture
        def store_url(self, tmp_path: Path) -> str:
            return f"sqlite:///{tmp_path}/events.db"

        async def tamper_edit(self, url: str, position: int) -> None: ...
        async def tamper_delete(self, url: str, position: int) -> None: ...
        async def tamper_swap(self, url: str, pos_a: int, pos_b: int) -> None: ...

``store_url`` gives a fresh, empty store. The tamper hooks change the stored data behind
the API's back (the store is closed while they run, and reopened afterwards), so the
verify tests can prove that edits, removals and reorderings are detected. A backend may
override ``open`` to pass extra options; worker processes always use ``open_store(url)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import os
import random
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from eventstore.base import MAX_PAGE, EventStore
from eventstore.canonical import chain_hash
from eventstore.config import Config
from eventstore.errors import DuplicateEventId, InvalidEvent, WrongExpectedVersion
from eventstore.model import (
    ANY,
    EXISTS,
    NO_STREAM,
    AppendResult,
    ExpectedVersion,
    NewEvent,
    Query,
    RecordedEvent,
)
from eventstore.retention import RETENTION_STREAM, RETENTION_TYPE, RetentionPolicy
from eventstore.urls import _local_path, open_store

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
#: Where ``eventstore`` is imported from, so worker processes import the same code.
PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)

# ---- helpers ------------------------------------------------------------------------------


def new(type_: str = "test.happened", **kw: Any) -> NewEvent:
    return NewEvent(type=type_, **kw)


def batch(n: int, type_: str = "test.happened", **kw: Any) -> list[NewEvent]:
    """``n`` events whose data says where they sit in the batch."""
    return [NewEvent(type=type_, data={"i": i, "of": n}, **kw) for i in range(n)]


async def all_events(store: EventStore, query: Query | None = None,
                     after: int | None = None) -> list[RecordedEvent]:
    return [e async for e in store.read(query, after=after)]


async def stream_events(store: EventStore, stream: str, from_version: int = 0
                        ) -> list[RecordedEvent]:
    return [e async for e in store.read_stream(stream, from_version)]


Snapshot = tuple[int, list[tuple[str, str, int, int, str]]]


async def snapshot(store: EventStore) -> Snapshot:
    """Everything observable about the log, to prove that a failed call wrote nothing."""
    events = await all_events(store)
    return await store.head_position(), [
        (e.id, e.stream, e.version, e.position, e.hash) for e in events
    ]


def ids(events: Sequence[RecordedEvent | NewEvent]) -> list[str]:
    return [e.id for e in events]


def assert_position_order(events: Sequence[RecordedEvent], gapless: bool) -> None:
    positions = [e.position for e in events]
    assert all(a < b for a, b in itertools.pairwise(positions)), positions
    if gapless and positions:
        assert positions == list(range(positions[0], positions[0] + len(positions))), (
            "positions have holes"
        )


def assert_chain(events: Sequence[RecordedEvent]) -> None:
    """Versions 0..n-1, each prev_hash links to the previous hash, each hash recomputes."""
    assert [e.version for e in events] == list(range(len(events)))
    prev: str | None = None
    for e in events:
        assert e.prev_hash == prev, f"v{e.version} does not link to v{e.version - 1}"
        assert e.hash == chain_hash(e.hash_fields(), e.prev_hash)
        prev = e.hash


class Collector:
    """A subscription running in a background task, recording what it receives."""

    def __init__(self, store: EventStore, query: Query | None = None,
                 after: int | None = None) -> None:
        self.events: list[RecordedEvent] = []
        self._task = asyncio.create_task(self._run(store, query, after))

    async def _run(self, store: EventStore, query: Query | None, after: int | None) -> None:
        self._gen = store.subscribe(query, after=after, poll_interval=0.05)
        async for ev in self._gen:
            self.events.append(ev)

    def _awaiting(self) -> str:
        """Where the subscription generator is suspended, innermost last."""
        lines, obj = [], getattr(self, "_gen", None)
        while obj is not None:
            frame = getattr(obj, "ag_frame", None) or getattr(obj, "cr_frame", None)
            if frame is not None:
                lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} "
                             f"{frame.f_code.co_name}")
            obj = getattr(obj, "ag_await", None) or getattr(obj, "cr_await", None)
        return "\n".join(lines)

    async def wait_for(self, done: Callable[[list[RecordedEvent]], bool],
                       within: float = 20.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not done(self.events):
            if self._task.done():
                self._task.result()  # re-raise what killed the subscription
                raise AssertionError("the subscription ended by itself")
            if loop.time() > deadline:
                raise AssertionError(
                    f"subscription got {len(self.events)} events in {within}s; last position "
                    f"{self.events[-1].position if self.events else None}"
                )
            await asyncio.sleep(0.01)

    async def wait_count(self, n: int, within: float = 20.0) -> None:
        await self.wait_for(lambda evs: len(evs) >= n, within)

    async def stop(self, within: float = 30.0) -> None:
        """Cancel the subscription; it must end (a swallowed cancel would poll forever)."""
        self._task.cancel()
        done, _ = await asyncio.wait({self._task}, timeout=within)
        if not done:
            where = io.StringIO()
            self._task.print_stack(file=where)
            self._task.cancel()
            raise AssertionError(f"the subscription was cancelled and still ran {within}s "
                                 f"on, in:\n{where.getvalue()}{self._awaiting()}")
        with contextlib.suppress(asyncio.CancelledError):
            self._task.result()


def local_store_files(url: str) -> list[Path]:
    """Files a local backend (sqlite://, file://) keeps, to look at the raw bytes."""
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("sqlite", "file"):
        return []
    path = _local_path(url, None)
    if scheme == "sqlite":
        return [p for p in path.parent.glob(path.name + "*") if p.is_file()]
    return [p for p in path.rglob("*") if p.is_file()]


# ---- the random data set the filter tests compare against Query.matches ------------------

FILTER_STREAMS = (
    "run-1", "run-10", "run-2", "task-a", "task-b", "task_x", "taskXx",
    "session-1", "session-2", "s", "misc.log",
)
FILTER_TYPES = (
    "tool.requested", "tool.completed", "tool.denied", "tool", "toolbox.opened",
    "tool_x.done", "toolyx.done", "model.called", "model.responded", "run.started",
    "agent.started", "agent.sub.finished",
)
FILTER_ACTORS = ("orchestrator", "agent:coder", "agent:reviewer", "user:ann", "claude-code")
FILTER_CORRELATIONS = ("r1", "r2", "r_3", "rX3", None)
TYPE_PATTERNS = (
    "tool.*", "tool.completed", "tool", "model.*", "run.started", "*", "tool_x.*",
    "agent.*", "agent.sub.*", "toolbox.*", "tool.requested", "nothing.*",
)
PREFIXES = ("run-", "run-1", "task-", "task_", "session-", "s", "zzz", "task", "misc.")


def random_events(rng: random.Random, n: int) -> list[tuple[str, NewEvent]]:
    """``n`` (stream, event) pairs; timestamps repeat on purpose to hit since/until edges."""
    stamps = [T0 + timedelta(seconds=rng.randint(0, 600), microseconds=rng.choice(
        [0, 1, 999_999, rng.randint(0, 999_999)])) for _ in range(n // 3 + 1)]
    out = []
    for i in range(n):
        out.append((
            rng.choice(FILTER_STREAMS),
            NewEvent(
                type=rng.choice(FILTER_TYPES),
                actor=rng.choice(FILTER_ACTORS),
                correlation_id=rng.choice(FILTER_CORRELATIONS),
                occurred_at=rng.choice(stamps),
                data={"n": i},
            ),
        ))
    return out


def random_query(rng: random.Random, stamps: Sequence[datetime]) -> Query:
    kw: dict[str, Any] = {}
    if rng.random() < 0.2:
        kw["stream"] = rng.choice((*FILTER_STREAMS, "run-99"))
    if rng.random() < 0.3:
        kw["stream_prefix"] = rng.choice(PREFIXES)
    if rng.random() < 0.4:
        kw["types"] = tuple(rng.sample(TYPE_PATTERNS, rng.randint(1, 3)))
    if rng.random() < 0.3:
        kw["actors"] = tuple(rng.sample((*FILTER_ACTORS, "agent:ghost"), rng.randint(1, 2)))
    if rng.random() < 0.3:
        kw["correlation_id"] = rng.choice(("r1", "r2", "r_3", "rX3", "nope"))
    if rng.random() < 0.3:
        kw["since"] = rng.choice(stamps)
    if rng.random() < 0.3:
        kw["until"] = rng.choice(stamps) + timedelta(microseconds=rng.choice((0, 0, 1)))
    return Query(**kw)


# ---- the suite ----------------------------------------------------------------------------


class _ContractBase:
    """What both contract classes share: opening a store from the subclass's URL."""

    async def open(self, url: str) -> EventStore:
        """Open the store under test; defaults only, so a stray orchestrail.yaml is ignored."""
        return await open_store(url, config=Config())

    @pytest.fixture
    async def store(self, store_url: str) -> AsyncIterator[EventStore]:
        s = await self.open(store_url)
        try:
            yield s
        finally:
            await s.close()


class StoreContract(_ContractBase):
    """In-process behaviour of an event store. Subclass it with a ``store_url`` fixture."""

    # -- tamper hooks (raw access, bypassing the API) -------------------------------------

    async def tamper_edit(self, url: str, position: int) -> None:
        """Change the data of the event at ``position`` in place, keeping its hash."""
        raise NotImplementedError(f"{type(self).__name__} must implement tamper_edit")

    async def tamper_delete(self, url: str, position: int) -> None:
        """Remove the event at ``position``, leaving everything else as it is."""
        raise NotImplementedError(f"{type(self).__name__} must implement tamper_delete")

    async def tamper_swap(self, url: str, pos_a: int, pos_b: int) -> None:
        """Swap the contents of two events of one stream, keeping positions and versions."""
        raise NotImplementedError(f"{type(self).__name__} must implement tamper_swap")

    # -- append and read ------------------------------------------------------------------

    async def test_empty_store(self, store: EventStore) -> None:
        assert await store.head_position() == 0
        assert await store.stream_version("run-1") is None
        assert await all_events(store) == []
        assert await stream_events(store, "run-1") == []
        page = await store.read_page(Query(), limit=10)
        assert page.events == [] and page.next_cursor is None
        assert await store.streams() == []

    async def test_round_trip_every_field(self, store: EventStore) -> None:
        cest = timezone(timedelta(hours=2))
        first = NewEvent(
            type="tool.completed",
            data={
                "text": "héllo ✓ \"quoted\" \\ back\nslash", "int": 10**15, "neg": -3,
                "float": 1.5, "bool": True, "none": None, "list": [1, "two", {"three": 3}],
                "nested": {"b": {"c": []}, "a": {}}, "emoji": "🦀",
            },
            metadata={"trace": "abc", "n": 1, "tags": ["x", "y"]},
            actor="agent:coder",
            correlation_id="run-123",
            causation_id="0190-cause",
            occurred_at=datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=cest),
        )
        second = NewEvent(type="tool.requested", actor="user:ann")
        before = datetime.now(UTC) - timedelta(seconds=5)
        result = await store.append("session-1", [first, second])
        after = datetime.now(UTC) + timedelta(seconds=5)
        got = await stream_events(store, "session-1")
        assert len(got) == 2
        a, b = got
        for sent, rec in ((first, a), (second, b)):
            assert rec.id == sent.id
            assert rec.type == sent.type
            assert rec.data == sent.data
            assert rec.metadata == sent.metadata
            assert rec.actor == sent.actor
            assert rec.correlation_id == sent.correlation_id
            assert rec.causation_id == sent.causation_id
            assert rec.occurred_at == sent.occurred_at
            assert rec.occurred_at.utcoffset() == timedelta(0)
            assert rec.stream == "session-1"
            assert rec.recorded_at.utcoffset() == timedelta(0)
            assert before <= rec.recorded_at <= after
        assert a.occurred_at == datetime(2024, 2, 29, 21, 59, 59, 123456, tzinfo=UTC)
        assert (a.version, b.version) == (0, 1)
        assert (a.position, b.position) == (result.first_position, result.last_position)
        assert b.data == {} and b.metadata == {} and b.correlation_id is None
        assert_chain(got)
        # the global read returns the same objects as the stream read
        assert [e.model_dump() for e in await all_events(store)] == [
            e.model_dump() for e in got
        ]

    async def test_append_result_fields(self, store: EventStore) -> None:
        r1 = await store.append("run-1", batch(3))
        assert isinstance(r1, AppendResult)
        assert r1.stream == "run-1"
        assert (r1.first_version, r1.last_version) == (0, 2)
        assert r1.first_position >= 1
        assert r1.last_position >= r1.first_position + 2
        r2 = await store.append("run-1", batch(2))
        assert (r2.first_version, r2.last_version) == (3, 4)
        assert r2.first_position > r1.last_position
        r3 = await store.append("run-2", batch(1))
        assert (r3.first_version, r3.last_version) == (0, 0)
        assert r3.first_position == r3.last_position > r2.last_position
        if store.gapless_positions:
            assert (r1.first_position, r1.last_position) == (1, 3)
            assert (r2.first_position, r2.last_position) == (4, 5)
            assert r3.first_position == 6
        assert await store.head_position() == r3.last_position
        assert await store.stream_version("run-1") == 4
        got = await stream_events(store, "run-1")
        assert got[0].position == r1.first_position and got[2].position == r1.last_position
        assert got[3].position == r2.first_position and got[4].position == r2.last_position

    async def test_read_stream_order_and_from_version(self, store: EventStore) -> None:
        sent = batch(7)
        for i in range(0, 7, 2):
            await store.append("task-a", sent[i:i + 2])
            await store.append("task-b", batch(1))
        got = await stream_events(store, "task-a")
        assert ids(got) == ids(sent)
        assert [e.version for e in got] == list(range(7))
        assert ids(await stream_events(store, "task-a", 3)) == ids(sent[3:])
        assert ids(await stream_events(store, "task-a", 6)) == ids(sent[6:])
        assert await stream_events(store, "task-a", 7) == []
        limited = [e async for e in store.read_stream("task-a", 2, limit=3)]
        assert ids(limited) == ids(sent[2:5])
        assert await stream_events(store, "task-nope") == []
        with pytest.raises(InvalidEvent):
            await stream_events(store, "task-a", -1)

    async def test_read_global_order_and_after(self, store: EventStore) -> None:
        order: list[str] = []
        for i in range(6):
            evs = batch(i % 3 + 1)
            await store.append(f"run-{i % 2}", evs)
            order += ids(evs)
        got = await all_events(store)
        assert ids(got) == order
        assert_position_order(got, store.gapless_positions)
        cut = got[4].position
        assert ids(await all_events(store, after=cut)) == order[5:]
        assert await all_events(store, after=got[-1].position) == []

    async def test_read_beyond_one_internal_batch(self, store: EventStore) -> None:
        """Reads page internally; crossing a page boundary must neither drop nor repeat."""
        sent = batch(2_500)
        await store.append("run-big", sent)
        assert ids(await stream_events(store, "run-big")) == ids(sent)
        assert ids(await all_events(store)) == ids(sent)
        assert ids(await stream_events(store, "run-big", 999)) == ids(sent[999:])

    async def test_empty_batch_rejected(self, store: EventStore) -> None:
        with pytest.raises(InvalidEvent):
            await store.append("run-1", [])
        assert await store.stream_version("run-1") is None
        assert await store.head_position() == 0

    async def test_invalid_stream_names_rejected(self, store: EventStore) -> None:
        await store.append("ok-1", batch(1))
        before = await snapshot(store)
        bad = ["", " run", "run 1", "-run", "run\n", "a" * 201, "run/é", "run#1", ".run"]
        for name in bad:
            with pytest.raises(InvalidEvent):
                await store.append(name, batch(1))
        assert await snapshot(store) == before

    async def test_reserved_streams_rejected_for_append(self, store: EventStore) -> None:
        for name in ("$retention", "$all", "$x-1"):
            with pytest.raises(InvalidEvent, match="reserved"):
                await store.append(name, batch(1))
        assert await store.head_position() == 0
        assert await stream_events(store, RETENTION_STREAM) == []

    async def test_invalid_types_and_objects_rejected(self, store: EventStore) -> None:
        for bad_type in ("", "tool completed", "1tool", "tool..x", "tool.*", "tool."):
            with pytest.raises(ValueError):
                NewEvent(type=bad_type)
        await store.append("run-1", batch(1))
        before = await snapshot(store)
        # a NewEvent built without validation must still be refused by the store
        sneaky = NewEvent.model_construct(
            type="not a type", data={}, actor="orchestrator", correlation_id=None,
            causation_id=None, id="sneaky-1", occurred_at=T0, metadata={},
        )
        with pytest.raises(InvalidEvent):
            await store.append("run-1", [*batch(2), sneaky])
        with pytest.raises(InvalidEvent):
            await store.append("run-1", [new(), {"type": "x.y"}])  # type: ignore[list-item]
        assert await snapshot(store) == before

    async def test_versions_gapless_per_stream(self, store: EventStore) -> None:
        rng = random.Random(7)
        names = ["run-a", "run-b", "run-c"]
        sent: dict[str, list[str]] = {n: [] for n in names}
        for _ in range(30):
            name = rng.choice(names)
            evs = batch(rng.randint(1, 4))
            await store.append(name, evs)
            sent[name] += ids(evs)
        for name in names:
            got = await stream_events(store, name)
            assert ids(got) == sent[name]
            assert_chain(got)
            assert await store.stream_version(name) == len(got) - 1

    async def test_positions_in_commit_order(self, store: EventStore) -> None:
        results = [await store.append(f"run-{i % 3}", batch(i % 4 + 1)) for i in range(20)]
        for prev, cur in itertools.pairwise(results):
            assert cur.first_position > prev.last_position
        got = await all_events(store)
        assert_position_order(got, store.gapless_positions)
        expect = [p for r in results for p in range(r.first_position, r.last_position + 1)]
        if store.gapless_positions:
            assert [e.position for e in got] == expect
            assert got[0].position == 1
        assert await store.head_position() == results[-1].last_position

    async def test_reopen_keeps_everything(self, store_url: str) -> None:
        s = await self.open(store_url)
        try:
            await s.append("run-1", batch(3))
            await s.append("run-2", batch(2))
            before = await snapshot(s)
        finally:
            await s.close()
        s = await self.open(store_url)
        try:
            assert await snapshot(s) == before
            r = await s.append("run-1", batch(1), expected_version=2)
            assert r.first_version == 3 and r.first_position > before[0]
            assert_chain(await stream_events(s, "run-1"))
        finally:
            await s.close()

    # -- expected_version -----------------------------------------------------------------

    async def test_expected_version_no_stream(self, store: EventStore) -> None:
        r = await store.append("run-1", batch(2), expected_version=NO_STREAM)
        assert r.first_version == 0
        before = await snapshot(store)
        with pytest.raises(WrongExpectedVersion) as info:
            await store.append("run-1", batch(1), expected_version=NO_STREAM)
        assert info.value.stream == "run-1" and info.value.actual == 1
        assert await snapshot(store) == before

    async def test_expected_version_exists(self, store: EventStore) -> None:
        with pytest.raises(WrongExpectedVersion) as info:
            await store.append("run-1", batch(1), expected_version=EXISTS)
        assert info.value.actual is None
        assert await store.stream_version("run-1") is None
        assert await store.head_position() == 0
        await store.append("run-1", batch(1))
        r = await store.append("run-1", batch(1), expected_version=EXISTS)
        assert r.first_version == 1

    async def test_expected_version_exact(self, store: EventStore) -> None:
        with pytest.raises(WrongExpectedVersion):
            await store.append("run-1", batch(1), expected_version=0)
        assert await store.head_position() == 0
        await store.append("run-1", batch(3), expected_version=NO_STREAM)
        await store.append("run-2", batch(1))
        before = await snapshot(store)
        for wrong in (0, 1, 3, 100):
            with pytest.raises(WrongExpectedVersion) as info:
                await store.append("run-1", batch(2), expected_version=wrong)
            assert info.value.expected == wrong and info.value.actual == 2
            assert await snapshot(store) == before
        r = await store.append("run-1", batch(2), expected_version=2)
        assert (r.first_version, r.last_version) == (3, 4)
        r = await store.append("run-1", batch(1), expected_version=4)
        assert r.first_version == 5

    async def test_expected_version_any(self, store: EventStore) -> None:
        r1 = await store.append("run-1", batch(1), expected_version=ANY)
        r2 = await store.append("run-1", batch(1), expected_version=ANY)
        r3 = await store.append("run-1", batch(1))
        assert [r.first_version for r in (r1, r2, r3)] == [0, 1, 2]

    async def test_invalid_expected_version_rejected(self, store: EventStore) -> None:
        for bad in (-1, True, "3", 1.0, None):
            with pytest.raises(InvalidEvent):
                await store.append("run-1", batch(1), expected_version=bad)  # type: ignore[arg-type]
        assert await store.head_position() == 0

    # -- idempotency ----------------------------------------------------------------------

    async def test_idempotent_retry_returns_original(self, store: EventStore) -> None:
        b1, b2, b3 = batch(2), batch(2), batch(1)
        r1 = await store.append("run-1", b1, expected_version=NO_STREAM)
        r2 = await store.append("run-1", b2, expected_version=1)
        await store.append("run-2", batch(1))
        await store.append("run-1", b3, expected_version=3)
        before = await snapshot(store)
        assert await store.append("run-1", b1, expected_version=NO_STREAM) == r1
        assert await store.append("run-1", b1) == r1
        # expected_version 1 is stale now (the stream is at 4), but this is a retry
        assert await store.append("run-1", b2, expected_version=1) == r2
        assert await store.append("run-1", b2, expected_version=ANY) == r2
        assert await snapshot(store) == before

    async def test_retry_elsewhere_is_duplicate(self, store: EventStore) -> None:
        b1 = batch(2)
        await store.append("run-1", b1)
        await store.append("run-1", batch(1))
        before = await snapshot(store)
        with pytest.raises(DuplicateEventId) as info:
            await store.append("run-2", b1)
        assert info.value.event_id == b1[0].id
        assert (info.value.stream, info.value.version) == ("run-1", 0)
        fresh = batch(3)
        with pytest.raises(DuplicateEventId) as info:
            await store.append("run-1", [*fresh[:2], b1[1], fresh[2]])
        assert info.value.event_id == b1[1].id
        with pytest.raises(DuplicateEventId):
            await store.append("run-1", [b1[1], b1[0]])  # same ids, reordered
        with pytest.raises(DuplicateEventId):
            await store.append("run-1", [*b1, fresh[0]])  # a retry plus something new
        assert await snapshot(store) == before
        # the fresh ids were not stored by the failed calls: they append normally now
        r = await store.append("run-1", fresh, expected_version=2)
        assert (r.first_version, r.last_version) == (3, 5)

    async def test_duplicate_ids_inside_batch_rejected(self, store: EventStore) -> None:
        e = new()
        with pytest.raises(InvalidEvent):
            await store.append("run-1", [e, new(), e])
        assert await store.head_position() == 0
        assert await store.stream_version("run-1") is None

    async def test_append_many_keeps_order_checks_and_redacts(self, store: EventStore) -> None:
        a1, b1, a2 = batch(2), batch(1), batch(3)
        key = "sk-ant-api03-" + "Z" * 40
        c1 = [new(data={"prompt": f"use {key}"})]
        results = await store.append_many(
            [("run-a", a1), ("run-b", b1), ("run-a", a2), ("session-c", c1)])
        assert [(r.stream, r.first_version, r.last_version) for r in results] == [
            ("run-a", 0, 1), ("run-b", 0, 0), ("run-a", 2, 4), ("session-c", 0, 0)]
        assert ids(await stream_events(store, "run-a")) == ids(a1) + ids(a2)
        assert ids(await all_events(store)) == ids(a1) + ids(b1) + ids(a2) + ids(c1)
        (rec,) = await stream_events(store, "session-c")
        assert key not in rec.to_json() and "REDACTED" in rec.data["prompt"]
        assert await store.append_many([]) == []
        with pytest.raises(InvalidEvent):
            await store.append_many([("run-a", [])])
        assert (await store.verify()).ok

    # -- atomicity ------------------------------------------------------------------------

    async def test_failed_batch_writes_nothing(self, store: EventStore) -> None:
        taken = batch(1)
        await store.append("run-1", taken)
        before = await snapshot(store)
        doomed = batch(50)
        with pytest.raises(DuplicateEventId):
            await store.append("run-2", [*doomed, taken[0]])
        with pytest.raises(WrongExpectedVersion):
            await store.append("run-1", doomed, expected_version=5)
        assert await snapshot(store) == before
        stored = set(ids(await all_events(store)))
        assert not stored & set(ids(doomed))
        r = await store.append("run-2", doomed, expected_version=NO_STREAM)
        assert (r.first_version, r.last_version) == (0, 49)

    # -- concurrency in one process -------------------------------------------------------

    async def test_concurrent_expected_version_one_winner(self, store: EventStore) -> None:
        rounds, tasks = 8, 6
        for r in range(rounds):
            expected: ExpectedVersion = NO_STREAM if r == 0 else r - 1
            outcomes = await asyncio.gather(
                *(store.append("run-race", [new(data={"round": r, "t": t})], expected)
                  for t in range(tasks)),
                return_exceptions=True,
            )
            wins = [o for o in outcomes if isinstance(o, AppendResult)]
            losses = [o for o in outcomes if isinstance(o, WrongExpectedVersion)]
            assert len(wins) == 1, outcomes
            assert len(losses) == tasks - 1, outcomes
            assert wins[0].first_version == r
        got = await stream_events(store, "run-race")
        assert [e.data["round"] for e in got] == list(range(rounds))
        assert_chain(got)

    async def test_concurrent_writers_with_retry_lose_nothing(self, store: EventStore) -> None:
        writers, each = 6, 8

        async def writer(w: int) -> int:
            conflicts = 0
            for seq in range(each):
                while True:
                    v = await store.stream_version("run-shared")
                    try:
                        await store.append(
                            "run-shared", [new(data={"w": w, "seq": seq})],
                            expected_version=NO_STREAM if v is None else v,
                        )
                        break
                    except WrongExpectedVersion:
                        conflicts += 1
                        await asyncio.sleep(random.random() / 1000)
            return conflicts

        await asyncio.gather(*(writer(w) for w in range(writers)))
        got = await stream_events(store, "run-shared")
        assert len(got) == writers * each
        assert_chain(got)
        pairs = [(e.data["w"], e.data["seq"]) for e in got]
        assert len(set(pairs)) == len(pairs)
        for w in range(writers):
            assert [s for ww, s in pairs if ww == w] == list(range(each))

    async def test_concurrent_batches_never_interleave(self, store: EventStore) -> None:
        size = 500
        for round_ in range(3):
            a, b = f"run-a{round_}", f"run-b{round_}"
            ra, rb = await asyncio.gather(
                store.append(a, batch(size)), store.append(b, batch(size))
            )
            pa = [e.position for e in await stream_events(store, a)]
            pb = [e.position for e in await stream_events(store, b)]
            assert len(pa) == len(pb) == size
            assert max(pa) < min(pb) or max(pb) < min(pa), "two batches interleaved"
            assert (pa[0], pa[-1]) == (ra.first_position, ra.last_position)
            assert (pb[0], pb[-1]) == (rb.first_position, rb.last_position)
            if store.gapless_positions:
                assert pa == list(range(pa[0], pa[0] + size))
                assert pb == list(range(pb[0], pb[0] + size))

    async def test_readers_never_see_a_partial_batch(self, store: EventStore) -> None:
        size, batches = 1_000, 6
        counts: list[int] = []
        done = asyncio.Event()

        async def reader() -> None:
            while not done.is_set():
                page = await store.read_page(Query(stream="run-big"), limit=MAX_PAGE)
                counts.append(len(page.events))
                version = await store.stream_version("run-big")
                counts.append(0 if version is None else version + 1)
                await asyncio.sleep(0.002)

        task = asyncio.create_task(reader())
        try:
            for _ in range(batches):
                await store.append("run-big", batch(size))
                await asyncio.sleep(0.01)
        finally:
            done.set()
            await task
        assert len(counts) >= 2 * batches, "the reader did not run alongside the writer"
        partial = [n for n in counts if n % size]
        assert not partial, f"readers saw partial batches: {partial[:5]}"
        assert counts[-1] == size * batches

    # -- subscriptions --------------------------------------------------------------------

    @pytest.mark.timeout(90)
    async def test_subscribe_catch_up_then_live(self, store: EventStore) -> None:
        first = batch(5)
        await store.append("run-1", first)
        stored = await all_events(store)
        sub = Collector(store, after=stored[1].position)
        try:
            await sub.wait_count(3)
            assert ids(sub.events) == ids(first[2:])
            live = batch(4)
            await store.append("run-2", live[:1])
            await store.append("run-1", live[1:])
            await sub.wait_count(7)
            await asyncio.sleep(0.15)  # anything extra would arrive now
            assert ids(sub.events) == ids(first[2:]) + ids(live)
            assert_position_order(sub.events, store.gapless_positions)
        finally:
            await sub.stop()

    @pytest.mark.timeout(90)
    async def test_subscribe_from_the_beginning(self, store: EventStore) -> None:
        sub = Collector(store)
        try:
            await asyncio.sleep(0.1)
            assert sub.events == []
            sent = batch(3)
            await store.append("run-1", sent)
            await sub.wait_count(3)
            more = batch(2)
            await store.append("run-1", more)
            await sub.wait_count(5)
            assert ids(sub.events) == ids(sent + more)
        finally:
            await sub.stop()

    @pytest.mark.timeout(120)
    async def test_subscription_stopped_as_an_append_wakes_it_ends(
        self, store: EventStore
    ) -> None:
        """The cancel and the wake-up in one loop step (the append returns, the caller stops
        the subscriber at once): the subscription ends. ``asyncio.wait_for`` on Python 3.11
        swallowed that cancel and the subscriber polled forever."""
        for i in range(10):
            sub = Collector(store, after=await store.head_position())
            await store.append(f"run-{i}", batch(1))
            await sub.wait_count(1)
            for _ in range(20):  # let it reach its wait for the next append
                await asyncio.sleep(0)
            await store.append(f"run-{i}", batch(1))
            await sub.stop()

    @pytest.mark.timeout(90)
    async def test_subscribe_under_concurrent_writers(self, store: EventStore) -> None:
        """Started while writers run, a subscriber gets every later event exactly once."""
        rng = random.Random(11)
        writers, appends = 4, 25
        early = Collector(store, after=0)
        late: Collector | None = None
        started = asyncio.Event()

        async def writer(w: int) -> None:
            for k in range(appends):
                await store.append(f"session-{w}", batch(rng.randint(1, 5)))
                if w == 0 and k == appends // 2:
                    started.set()
                await asyncio.sleep(rng.random() * 0.004)

        try:
            job = asyncio.gather(*(writer(w) for w in range(writers)))
            await started.wait()
            start = await store.head_position()
            late = Collector(store, after=start)
            await job
            everything = await all_events(store)
            head = everything[-1].position
            await late.wait_for(lambda evs: bool(evs) and evs[-1].position >= head)
            await early.wait_for(lambda evs: bool(evs) and evs[-1].position >= head)
            await asyncio.sleep(0.15)
            assert ids(early.events) == ids(everything)
            expect = [e for e in everything if e.position > start]
            assert len(expect) > 0
            assert ids(late.events) == ids(expect)
            assert len(set(ids(late.events))) == len(late.events)
        finally:
            await early.stop()
            if late is not None:
                await late.stop()

    @pytest.mark.timeout(90)
    async def test_subscribe_with_filter(self, store: EventStore) -> None:
        query = Query(types=("tool.*",), stream_prefix="session-")
        sub = Collector(store, query)
        try:
            wanted: list[str] = []
            for i in range(6):
                tool = [new("tool.requested"), new("tool.completed")]
                noise = [new("model.called"), new("toolbox.opened")]
                stream = "session-1" if i % 2 else "run-1"
                await store.append(stream, tool + noise)
                if stream.startswith("session-"):
                    wanted += ids(tool)
            await sub.wait_count(len(wanted))
            await asyncio.sleep(0.15)
            assert ids(sub.events) == wanted
            assert all(query.matches(e) for e in sub.events)
        finally:
            await sub.stop()

    # -- filters --------------------------------------------------------------------------

    async def test_each_filter_explicitly(self, store: EventStore) -> None:
        """Hand-written cases, so the reference (Query.matches) itself is pinned too."""
        t = [T0 + timedelta(minutes=i) for i in range(4)]
        a = new("tool.completed", actor="agent:coder", correlation_id="r_1", occurred_at=t[0])
        b = new("tool", actor="agent:reviewer", correlation_id="rX1", occurred_at=t[1])
        c = new("toolbox.opened", actor="user:ann", correlation_id="r_1", occurred_at=t[2])
        d = new("tool_x.done", actor="orchestrator", occurred_at=t[3])
        e = new("toolyx.done", actor="agent:coder", occurred_at=t[3])
        f = new("tool.sub.deep", actor="claude-code", correlation_id="r_1", occurred_at=t[1])
        await store.append("task_a", [a])
        await store.append("taskXa", [b])
        await store.append("task-a", [c, d])
        await store.append("run-10", [e])
        await store.append("run-1", [f])

        async def q(**kw: Any) -> list[str]:
            query = Query(**kw)
            got = await all_events(store, query)
            page = await store.read_page(query, limit=MAX_PAGE)
            assert ids(page.events) == ids(got) and page.next_cursor is None
            return ids(got)

        assert await q() == ids([a, b, c, d, e, f])
        assert await q(stream="task-a") == ids([c, d])
        assert await q(stream="task") == []
        assert await q(stream_prefix="task_") == ids([a])
        assert await q(stream_prefix="task") == ids([a, b, c, d])
        assert await q(stream_prefix="run-1") == ids([e, f])
        assert await q(types=("tool.*",)) == ids([a, f])
        assert await q(types=("tool",)) == ids([b])
        assert await q(types=("tool_x.*",)) == ids([d])
        assert await q(types=("tool.*", "toolbox.opened")) == ids([a, c, f])
        assert await q(types=("*",)) == ids([a, b, c, d, e, f])
        assert await q(types=("tool.sub.*",)) == ids([f])
        assert await q(actors=("agent:coder",)) == ids([a, e])
        assert await q(actors=("agent:coder", "user:ann")) == ids([a, c, e])
        assert await q(actors=("agent",)) == []
        assert await q(correlation_id="r_1") == ids([a, c, f])
        assert await q(correlation_id="r%") == []
        assert await q(since=t[1]) == ids([b, c, d, e, f])  # inclusive
        assert await q(until=t[1]) == ids([a])  # exclusive
        assert await q(since=t[1], until=t[3]) == ids([b, c, f])
        assert await q(since=t[1] + timedelta(microseconds=1), until=t[3]) == ids([c])
        assert await q(since=t[3], until=t[3]) == []
        # a naive datetime is read as UTC; other zones are converted
        assert await q(since=t[3].replace(tzinfo=None)) == ids([d, e])
        assert await q(since=t[3].astimezone(timezone(timedelta(hours=-5)))) == ids([d, e])
        assert await q(stream_prefix="task", types=("tool.*", "tool_x.*"),
                       since=t[0]) == ids([a, d])
        assert await q(correlation_id="r_1", actors=("user:ann", "claude-code"),
                       types=("tool.*",)) == ids([f])
        assert await q(stream="run-1", correlation_id="r_1", until=t[2]) == ids([f])

    async def test_filters_agree_with_reference(self, store: EventStore) -> None:
        """Fixed-seed random events and queries: the backend must equal Query.matches."""
        rng = random.Random(20240501)
        pairs = random_events(rng, 400)
        pending: dict[str, list[NewEvent]] = {}
        for stream, event in pairs:  # append in small per-stream batches, interleaved
            pending.setdefault(stream, []).append(event)
            if len(pending[stream]) >= rng.randint(1, 4):
                await store.append(stream, pending.pop(stream))
        for stream, events in pending.items():
            await store.append(stream, events)
        everything = await all_events(store)
        assert len(everything) == 400
        stamps = sorted({e.occurred_at for e in everything})
        nonempty = 0
        for i in range(250):
            query = random_query(rng, stamps)
            expect = [e for e in everything if query.matches(e)]
            got = await all_events(store, query)
            assert ids(got) == ids(expect), f"query {query!r}"
            nonempty += bool(expect)
            if i % 5 == 0:
                limit = rng.randint(1, 40)
                walked: list[RecordedEvent] = []
                cursor: int | None = None
                while True:
                    page = await store.read_page(query, after=cursor, limit=limit)
                    walked += page.events
                    if page.next_cursor is None:
                        break
                    cursor = page.next_cursor
                assert ids(walked) == ids(expect), f"paged query {query!r} limit {limit}"
            if i % 25 == 0 and len(everything) > 10:
                after = everything[rng.randrange(len(everything))].position
                tail = [e for e in expect if e.position > after]
                assert ids(await all_events(store, query, after=after)) == ids(tail)
        assert nonempty > 100, "the random queries matched too little to mean anything"

    # -- pagination -----------------------------------------------------------------------

    async def test_pagination_over_10000_events(self, store: EventStore) -> None:
        sent: list[str] = []
        for k in range(20):
            evs = batch(500, "tool.completed" if k % 2 else "model.called")
            await store.append(f"run-{k % 7}", evs)
            sent += ids(evs)
        seen: list[RecordedEvent] = []
        cursor: int | None = None
        pages = 0
        while True:
            page = await store.read_page(Query(), after=cursor, limit=100)
            pages += 1
            assert len(page.events) <= 100
            seen += page.events
            if page.next_cursor is None:
                break
            assert page.next_cursor == page.events[-1].position
            cursor = page.next_cursor
            assert pages <= 102, "pagination does not end"
        assert len(seen) == 10_000
        assert ids(seen) == sent
        assert_position_order(seen, store.gapless_positions)
        # a filtered walk over the same events
        filtered: list[str] = []
        cursor = None
        while True:
            page = await store.read_page(Query(types=("tool.*",)), after=cursor, limit=333)
            filtered += ids(page.events)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert filtered == [i for k, i in enumerate(sent) if (k // 500) % 2]

    async def test_page_limits_validated(self, store: EventStore) -> None:
        await store.append("run-1", batch(5))
        for bad in (0, -1, MAX_PAGE + 1):
            with pytest.raises(InvalidEvent):
                await store.read_page(Query(), limit=bad)
        with pytest.raises(InvalidEvent):
            await store.read_page(Query(), after=-1)
        page = await store.read_page(Query(), limit=MAX_PAGE)
        assert len(page.events) == 5 and page.next_cursor is None
        page = await store.read_page(Query(), limit=5)
        assert len(page.events) == 5 and page.next_cursor == page.events[-1].position
        end = await store.read_page(Query(), after=page.next_cursor, limit=5)
        assert end.events == [] and end.next_cursor is None
        one = await store.read_page(Query(), limit=1)
        assert len(one.events) == 1 and one.next_cursor == one.events[0].position

    async def test_pagination_stable_under_appends(self, store: EventStore) -> None:
        for k in range(10):
            await store.append(f"run-{k % 3}", batch(30))
        original = ids(await all_events(store))
        seen: list[str] = []
        cursor: int | None = None
        added = 0
        while True:
            page = await store.read_page(Query(), after=cursor, limit=25)
            seen += ids(page.events)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
            if added < 8:  # new events land behind the cursor's back
                await store.append(f"run-{added % 4}", batch(7))
                added += 1
        final = ids(await all_events(store))
        assert seen == final
        assert seen[: len(original)] == original
        assert len(seen) == len(set(seen)) == 300 + 8 * 7

    # -- redaction ------------------------------------------------------------------------

    async def test_secrets_never_stored(self, store: EventStore, store_url: str) -> None:
        key = "sk-ant-api03-" + "Q" * 40
        password = "hunter2-s3cret"
        event = new(
            data={
                "prompt": f"use {key} please",
                "url": f"postgresql://bob:{password}@db.internal:5432/app",
                "nested": {"list": [f"token={'t0k3n' * 3}"]},
            },
            metadata={"api_key": "plain-value-123", "note": f"key was {key}"},
        )
        await store.append("session-1", [event])
        (rec,) = await stream_events(store, "session-1")
        text = rec.to_json()
        for secret in (key, password, "t0k3nt0k3n", "plain-value-123"):
            assert secret not in text, f"{secret!r} reached the store"
        assert "bob" in rec.data["url"] and "db.internal" in rec.data["url"]
        assert "REDACTED" in rec.data["prompt"]
        assert rec.hash == chain_hash(rec.hash_fields(), rec.prev_hash)
        report = await store.verify()
        assert report.ok, report.problems
        files = local_store_files(store_url)
        for path in files:
            raw = path.read_bytes()
            for secret in (key, password):
                assert secret.encode() not in raw, f"{secret!r} is in {path}"

    # -- retention ------------------------------------------------------------------------

    async def _fill_for_retention(self, store: EventStore) -> None:
        await store.append("run-old", [new("run.started", correlation_id="old"),
                                       new("run.finished", correlation_id="old")])
        await store.append("session-old", batch(3, correlation_id="old"))
        await store.append("task-1", batch(2))
        await store.append("keep-me", batch(2))
        await store.append("run-live", [new("run.started", correlation_id="live")])
        await store.append("session-live", batch(2, correlation_id="live"))
        await store.append("task-2", batch(1))

    async def test_retention_default_removes_nothing(self, store: EventStore) -> None:
        await self._fill_for_retention(store)
        before = await snapshot(store)
        report = await store.apply_retention(RetentionPolicy(), dry_run=False)
        assert report.removed == [] and report.events_removed == 0 and report.record is None
        assert await snapshot(store) == before
        assert await stream_events(store, RETENTION_STREAM) == []

    async def test_retention_dry_run_changes_nothing(self, store: EventStore) -> None:
        await self._fill_for_retention(store)
        before = await snapshot(store)
        report = await store.apply_retention(RetentionPolicy(max_streams=0))
        assert report.dry_run
        assert {r.stream for r in report.removed} == {"run-old", "session-old", "task-1",
                                                      "keep-me", "task-2"}
        assert report.record is None
        assert await snapshot(store) == before
        assert await stream_events(store, RETENTION_STREAM) == []

    async def test_retention_max_streams_removes_whole_streams(self, store: EventStore) -> None:
        await self._fill_for_retention(store)
        infos = {s.stream: s for s in await store.streams()}
        policy = RetentionPolicy(max_streams=1, keep=("keep-",))
        report = await store.apply_retention(policy, dry_run=False)
        # eligible (oldest first): run-old, session-old, task-1, task-2; newest one stays
        removed = [r.stream for r in report.removed]
        assert removed == ["run-old", "session-old", "task-1"]
        assert report.events_removed == 2 + 3 + 2
        for name in removed:
            assert await stream_events(store, name) == []
            assert await store.stream_version(name) is None
        for name in ("task-2", "keep-me", "run-live", "session-live"):
            assert len(await stream_events(store, name)) == infos[name].count
        left = await all_events(store)
        assert {e.stream for e in left} == {"task-2", "keep-me", "run-live", "session-live",
                                            RETENTION_STREAM}
        assert report.record is not None and report.record.stream == RETENTION_STREAM
        # a second pass: the $retention stream itself is never a candidate
        again = await store.apply_retention(RetentionPolicy(max_streams=0), dry_run=False)
        assert {r.stream for r in again.removed} == {"task-2", "keep-me"}
        assert len(await stream_events(store, RETENTION_STREAM)) == 2
        report2 = await store.verify()
        assert report2.ok, report2.problems
        assert report2.removed_streams_accounted == 5

    async def test_retention_max_age(self, store: EventStore) -> None:
        await store.append("task-old-1", batch(2))
        await store.append("task-old-2", batch(1))
        await asyncio.sleep(0.05)
        cutoff = datetime.now(UTC)
        await asyncio.sleep(0.05)
        await store.append("task-new", batch(1))
        await store.append("task-old-2", batch(1))  # touched again: no longer old
        policy = RetentionPolicy(max_age=timedelta(hours=1))
        now = cutoff + timedelta(hours=1)
        report = await store.apply_retention(policy, dry_run=False, now=now)
        assert [r.stream for r in report.removed] == ["task-old-1"]
        assert await stream_events(store, "task-old-1") == []
        assert len(await stream_events(store, "task-old-2")) == 2
        assert len(await stream_events(store, "task-new")) == 1
        nothing = await store.apply_retention(policy, dry_run=False, now=now)
        assert nothing.removed == []
        assert (await store.verify()).ok

    async def test_retention_refuses_unfinished_runs(self, store: EventStore) -> None:
        await self._fill_for_retention(store)
        report = await store.apply_retention(RetentionPolicy(max_streams=0), dry_run=False)
        removed = {r.stream for r in report.removed}
        assert removed == {"run-old", "session-old", "task-1", "keep-me", "task-2"}
        assert set(report.protected_unfinished) == {"run-live", "session-live"}
        assert len(await stream_events(store, "run-live")) == 1
        assert len(await stream_events(store, "session-live")) == 2
        # once the run finishes, its streams may go
        await store.append("run-live", [new("run.finished", correlation_id="live")])
        later = await store.apply_retention(RetentionPolicy(max_streams=0), dry_run=False)
        assert {r.stream for r in later.removed} == {"run-live", "session-live"}
        assert later.protected_unfinished == []

    async def test_retention_record_accounts_for_removal(self, store: EventStore) -> None:
        await self._fill_for_retention(store)
        infos = {s.stream: s for s in await store.streams()}
        positions = {
            name: [e.position for e in await stream_events(store, name)] for name in infos
        }
        report = await store.apply_retention(RetentionPolicy(max_streams=0), dry_run=False)
        records = await stream_events(store, RETENTION_STREAM)
        assert len(records) == 1
        record = records[0]
        assert record.type == RETENTION_TYPE
        assert report.record is not None and report.record.id == record.id
        named = {item["stream"]: item for item in record.data["removed"]}
        assert set(named) == {r.stream for r in report.removed}
        for name, item in named.items():
            assert item["count"] == infos[name].count
            assert item["last_hash"] == infos[name].last_hash
            assert item["last_version"] == infos[name].last_version
            covered = [p for a, b in item["positions"] for p in range(a, b + 1)]
            assert covered == positions[name]
        assert record.position > max(p for ps in positions.values() for p in ps)
        verify = await store.verify()
        assert verify.ok, verify.problems
        assert verify.removed_streams_accounted == len(named)
        assert verify.events == len(await all_events(store))

    # -- verify ---------------------------------------------------------------------------

    async def _fill_for_verify(self, url: str) -> dict[str, list[RecordedEvent]]:
        s = await self.open(url)
        try:
            await s.append("run-1", batch(2))
            await s.append("session-1", batch(5))
            await s.append("run-1", batch(2))
            report = await s.verify()
            assert report.ok and report.events == 9 and report.streams == 2
            return {n: await stream_events(s, n) for n in ("run-1", "session-1")}
        finally:
            await s.close()

    async def _verify(self, url: str) -> Any:
        s = await self.open(url)
        try:
            return await s.verify()
        finally:
            await s.close()

    async def test_verify_clean_store(self, store: EventStore) -> None:
        empty = await store.verify()
        assert empty.ok and empty.events == 0 and empty.head_hash is None
        for i in range(5):
            await store.append(f"run-{i % 2}", batch(i + 1))
        report = await store.verify()
        assert report.ok, report.problems
        assert report.events == 15 and report.streams == 2
        last = (await all_events(store))[-1]
        assert report.head_position == last.position and report.head_hash == last.hash

    async def test_verify_detects_edited_event(self, store_url: str) -> None:
        streams = await self._fill_for_verify(store_url)
        target = streams["session-1"][2]
        await self.tamper_edit(store_url, target.position)
        report = await self._verify(store_url)
        assert not report.ok
        first = report.first_problem
        assert first.kind == "hash-mismatch"
        assert (first.position, first.event_id) == (target.position, target.id)
        assert first.stream == "session-1" and first.version == 2

    async def test_verify_detects_removed_event(self, store_url: str) -> None:
        streams = await self._fill_for_verify(store_url)
        gone, after = streams["session-1"][2], streams["session-1"][3]
        await self.tamper_delete(store_url, gone.position)
        report = await self._verify(store_url)
        assert not report.ok
        first = report.first_problem
        assert first.kind in ("position-gap", "version-gap")
        assert first.position == after.position and first.event_id == after.id
        assert any(p.kind == "version-gap" and p.stream == "session-1" for p in report.problems)

    async def test_verify_detects_reordered_events(self, store_url: str) -> None:
        streams = await self._fill_for_verify(store_url)
        a, b = streams["session-1"][1], streams["session-1"][2]
        await self.tamper_swap(store_url, a.position, b.position)
        report = await self._verify(store_url)
        assert not report.ok
        first = report.first_problem
        assert first.kind in ("broken-link", "hash-mismatch")
        assert first.position == a.position and first.stream == "session-1"


# ---- several OS processes -------------------------------------------------------------------

WORKER = r'''
"""Contract-suite worker: appends through open_store(url) in its own OS process."""
import asyncio, json, os, sys, time

from eventstore.config import Config
from eventstore.errors import WrongExpectedVersion
from eventstore.model import NO_STREAM, NewEvent
from eventstore.urls import open_store


async def main() -> None:
    url, mode, name, gate = sys.argv[1:5]
    args = json.loads(sys.argv[5])
    store = await open_store(url, config=Config())
    print("ready", flush=True)
    while gate != "-" and not os.path.exists(gate):
        time.sleep(0.005)
    out = {"appended": 0, "conflicts": 0}
    try:
        if mode == "own":
            for k in range(args["batches"]):
                evs = [NewEvent(type="test.written", actor="agent:" + name,
                                data={"w": name, "seq": k * args["size"] + i})
                       for i in range(args["size"])]
                await store.append("proc-" + name, evs)
                out["appended"] += len(evs)
        elif mode == "shared":
            for seq in range(args["count"]):
                while True:
                    v = await store.stream_version(args["stream"])
                    try:
                        event = NewEvent(type="test.shared", data={"w": name, "seq": seq})
                        await store.append(args["stream"], [event],
                                           expected_version=NO_STREAM if v is None else v)
                        out["appended"] += 1
                        break
                    except WrongExpectedVersion:
                        out["conflicts"] += 1
        elif mode == "crash":
            size = args["size"]
            k = 0
            while True:
                tag = name + "-" + str(k)
                evs = [NewEvent(type="test.batch", data={"batch": tag, "i": i, "of": size})
                       for i in range(size)]
                await store.append(args["stream"], evs)
                print("committed " + tag, flush=True)
                k += 1
        else:
            raise SystemExit("unknown mode " + mode)
    finally:
        await store.close()
    print(json.dumps(out), flush=True)


asyncio.run(main())
'''


class Worker:
    """One worker process, driven through its stdout lines."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.lines: list[str] = []

    async def readline(self, within: float = 60.0) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), within)
        line = raw.decode().strip()
        if not raw:
            err = b""
            if self.proc.stderr is not None:
                err = await self.proc.stderr.read()
            raise AssertionError(f"worker {self.name} ended early: {err.decode()[-3000:]}")
        self.lines.append(line)
        return line

    async def finish(self, within: float = 120.0) -> dict[str, Any]:
        stdout, stderr = await asyncio.wait_for(self.proc.communicate(), within)
        if self.proc.returncode != 0:
            raise AssertionError(
                f"worker {self.name} exited {self.proc.returncode}: {stderr.decode()[-3000:]}"
            )
        self.lines += stdout.decode().split()
        result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
        return result

    async def kill(self) -> list[str]:
        """SIGKILL, then the lines the worker managed to print before it died."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        stdout, _ = await self.proc.communicate()
        self.lines += [ln for ln in stdout.decode().splitlines() if ln.strip()]
        assert self.proc.returncode == -signal.SIGKILL
        return self.lines


class MultiProcessContract(_ContractBase):
    """Behaviour under several real OS processes. In-process-only backends skip this class.

    Workers run ``sys.executable`` on a small script (written to ``tmp_path``) that opens
    the store with ``open_store(url)``, exactly as concurrent Claude Code hooks would.
    """

    @pytest.fixture
    def worker_script(self, tmp_path: Path) -> Path:
        path = tmp_path / "contract_worker.py"
        path.write_text(WORKER)
        return path

    async def spawn(self, script: Path, url: str, mode: str, name: str,
                    gate: Path | None = None, **args: Any) -> Worker:
        env = dict(os.environ)
        env["PYTHONPATH"] = PACKAGE_ROOT + os.pathsep + env.get("PYTHONPATH", "")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(script), url, mode, name, str(gate or "-"), json.dumps(args),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
            cwd=str(script.parent),
        )
        worker = Worker(proc, name)
        assert await worker.readline() == "ready"
        return worker

    async def start_together(self, script: Path, url: str,
                             jobs: Sequence[tuple[str, str, dict[str, Any]]]) -> list[Worker]:
        """Start ``(mode, name, args)`` workers; release them at once when all are ready."""
        gate = script.parent / f"go-{os.urandom(4).hex()}"
        workers = await asyncio.gather(
            *(self.spawn(script, url, mode, name, gate, **args) for mode, name, args in jobs)
        )
        gate.touch()
        return list(workers)

    @pytest.mark.timeout(180)
    async def test_processes_append_to_own_streams(self, store_url: str,
                                                   worker_script: Path) -> None:
        names = [f"w{i}" for i in range(4)]
        args = {"batches": 25, "size": 8}
        workers = await self.start_together(
            worker_script, store_url, [("own", n, args) for n in names]
        )
        results = await asyncio.gather(*(w.finish() for w in workers))
        assert all(r["appended"] == 200 for r in results)
        store = await self.open(store_url)
        try:
            everything = await all_events(store)
            assert len(everything) == 800
            assert len(set(ids(everything))) == 800
            assert_position_order(everything, store.gapless_positions)
            for n in names:
                got = await stream_events(store, f"proc-{n}")
                assert [e.data["seq"] for e in got] == list(range(200))
                assert_chain(got)
            report = await store.verify()
            assert report.ok, report.problems
        finally:
            await store.close()

    @pytest.mark.timeout(180)
    async def test_processes_share_a_stream_with_expected_versions(
        self, store_url: str, worker_script: Path
    ) -> None:
        """Four processes race on one stream while two more write their own streams."""
        racers = [f"w{i}" for i in range(4)]
        jobs = [("shared", n, {"count": 30, "stream": "run-shared"}) for n in racers]
        jobs += [("own", f"o{i}", {"batches": 30, "size": 5}) for i in range(2)]
        workers = await self.start_together(worker_script, store_url, jobs)
        results = await asyncio.gather(*(w.finish() for w in workers))
        assert [r["appended"] for r in results] == [30] * 4 + [150] * 2
        store = await self.open(store_url)
        try:
            got = await stream_events(store, "run-shared")
            assert len(got) == 120, "lost or duplicated events"
            assert_chain(got)
            pairs = [(e.data["w"], e.data["seq"]) for e in got]
            assert len(set(pairs)) == 120
            for n in racers:
                assert [s for w, s in pairs if w == n] == list(range(30))
            for i in range(2):
                own = await stream_events(store, f"proc-o{i}")
                assert [e.data["seq"] for e in own] == list(range(150))
            everything = await all_events(store)
            assert len(everything) == 420 and len(set(ids(everything))) == 420
            assert_position_order(everything, store.gapless_positions)
            report = await store.verify()
            assert report.ok, report.problems
        finally:
            await store.close()

    @pytest.mark.timeout(180)
    async def test_subscriber_sees_every_event_from_other_processes(
        self, store_url: str, worker_script: Path
    ) -> None:
        store = await self.open(store_url)
        await store.append("run-before", batch(3))
        start = await store.head_position()
        sub = Collector(store, after=start)
        try:
            args = {"batches": 40, "size": 3}
            workers = await self.start_together(
                worker_script, store_url, [("own", f"w{i}", args) for i in range(4)]
            )
            results = await asyncio.gather(*(w.finish() for w in workers))
            total = sum(r["appended"] for r in results)
            assert total == 480
            await sub.wait_count(total, within=60)
            await asyncio.sleep(0.3)
            got = sub.events
            assert len(got) == total and len(set(ids(got))) == total
            assert all(e.stream.startswith("proc-") for e in got)
            assert ids(got) == ids(await all_events(store, after=start))
            assert_position_order(got, store.gapless_positions)
        finally:
            await sub.stop()
            await store.close()

    @pytest.mark.timeout(300)
    async def test_sigkill_mid_batch_leaves_whole_batches(
        self, store_url: str, worker_script: Path
    ) -> None:
        """Two writers append 2,000-event batches; each is SIGKILLed at a random moment.

        Afterwards (reopening is the crash recovery) every batch is whole or absent, no
        batch a writer reported as committed is lost, chains verify, and appends go on.
        """
        size, rounds = 2_000, 3
        rng = random.Random(4242)
        committed: list[str] = []
        for r in range(rounds):
            args = {"stream": "run-crash", "size": size}
            workers = await self.start_together(
                worker_script, store_url, [("crash", f"k{r}a", args), ("crash", f"k{r}b", args)]
            )
            for worker in workers:
                await asyncio.sleep(rng.uniform(0.05, 0.6))
                lines = await worker.kill()
                committed += [ln.split()[1] for ln in lines if ln.startswith("committed ")]
        store = await self.open(store_url)
        try:
            got = await stream_events(store, "run-crash")
            assert len(got) % size == 0, f"{len(got)} events: a partial batch is visible"
            assert_chain(got)
            for start in range(0, len(got), size):
                chunk = got[start:start + size]
                assert len({e.data["batch"] for e in chunk}) == 1, "batches interleaved"
                assert [e.data["i"] for e in chunk] == list(range(size))
            stored = {e.data["batch"] for e in got}
            lost = [t for t in committed if t not in stored]
            assert not lost, f"committed batches lost after SIGKILL: {lost}"
            assert len(stored) * size == len(got)
            assert len(await all_events(store)) == len(got)
            report = await store.verify()
            assert report.ok, report.problems
            last = len(got) - 1 if got else None
            res = await store.append("run-crash", batch(1),
                                     expected_version=NO_STREAM if last is None else last)
            assert res.first_version == len(got)
        finally:
            await store.close()


__all__ = [
    "Collector",
    "MultiProcessContract",
    "StoreContract",
    "all_events",
    "assert_chain",
    "assert_position_order",
    "batch",
    "snapshot",
    "stream_events",
]
