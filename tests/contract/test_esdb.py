"""The contract suite and backend tests for ``esdb://``, against an in-process gRPC server.

No EventStoreDB can run here, so ``tests/fakes/esdb_server.py`` implements the server side
of EventStoreDB's gRPC streams API from esdbclient's own protobuf definitions; esdbclient
talks to it unmodified over TCP on 127.0.0.1. Passing here means "correct against the
behaviour the fake models", NOT "verified against a real server" (docs/backends.md says
exactly which behaviours those are).

The tamper hooks edit the fake server's in-memory log (a real server offers no way to
edit an event in place, which is the point of the tamper tests).

A real server: set ``ORCHESTRAIL_TEST_ESDB_URL`` (e.g. ``esdb://localhost:2113?Tls=false``)
and ``TestEsdbRealServer`` appears, running the contract suite in a fresh namespace per
test. Unset, that class is not defined at all (so CI sees no skipped test), and a note is
printed in the terminal summary.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from esdbclient import AsyncEventStoreDBClient, StreamState
from esdbclient import NewEvent as EsdbNewEvent

from eventstore.backends.esdb import EsdbStore
from eventstore.backends.esdb_codec import RESERVED_PREFIX, esdb_id
from eventstore.canonical import canonical_json, format_ts
from eventstore.config import Config
from eventstore.errors import StoreError, StoreUnavailable, WrongExpectedVersion
from eventstore.model import ANY, NO_STREAM, NewEvent, Query
from eventstore.retention import RETENTION_STREAM, RetentionPolicy
from eventstore.testing import (
    MultiProcessContract,
    StoreContract,
    all_events,
    assert_chain,
    batch,
    stream_events,
)
from eventstore.urls import open_store
from tests.fakes.esdb_server import FakeEventStoreDB

REAL_URL = os.environ.get("ORCHESTRAIL_TEST_ESDB_URL", "")
_SERVERS: dict[str, FakeEventStoreDB] = {}


@pytest.fixture
def fake_esdb() -> Iterator[FakeEventStoreDB]:
    db = FakeEventStoreDB()
    url = db.start()
    _SERVERS[url] = db
    try:
        yield db
    finally:
        _SERVERS.pop(url, None)
        db.stop()


class _ForcedInterleaving:
    """Overrides shared by the stand-in and real-server classes."""

    async def test_readers_never_see_a_partial_batch(self, store: Any) -> None:
        """The contract's assertions, with the interleaving forced instead of timed.

        The contract version checks "the reader ran alongside the writer" by counting
        reads, which assumes re-reading up to 6,000 events is quicker than appending
        1,000. Over gRPC every event is one streamed message, so a full read takes longer
        than an append and the count falls short although nothing is wrong. Here the
        writer waits after each append until a read that overlapped it has finished.
        """
        size, batches = 1_000, 6
        counts: list[int] = []
        done = asyncio.Event()
        reads = 0

        async def reader() -> None:
            nonlocal reads
            while not done.is_set():
                page = await store.read_page(Query(stream="run-big"), limit=10_000)
                counts.append(len(page.events))
                version = await store.stream_version("run-big")
                counts.append(0 if version is None else version + 1)
                reads += 1
                await asyncio.sleep(0.002)

        task = asyncio.create_task(reader())
        try:
            for _ in range(batches):
                before = reads
                await store.append("run-big", batch(size))
                while reads <= before:  # noqa: ASYNC110 - polling a plain counter
                    await asyncio.sleep(0.005)
        finally:
            done.set()
            await task
        assert len(counts) >= 2 * batches
        partial = [n for n in counts if n % size]
        assert not partial, f"readers saw partial batches: {partial[:5]}"
        assert counts[-1] == size * batches


class TestEsdbStore(_ForcedInterleaving, StoreContract, MultiProcessContract):
    """The whole contract, through esdbclient, against the fake server over TCP."""

    @pytest.fixture
    def store_url(self, fake_esdb: FakeEventStoreDB) -> str:
        return fake_esdb.url

    async def tamper_edit(self, url: str, position: int) -> None:
        _SERVERS[url].tamper_edit(position)

    async def tamper_delete(self, url: str, position: int) -> None:
        _SERVERS[url].tamper_delete(position)

    async def tamper_swap(self, url: str, pos_a: int, pos_b: int) -> None:
        _SERVERS[url].tamper_swap(pos_a, pos_b)


if REAL_URL:

    class TestEsdbRealServer(_ForcedInterleaving, StoreContract):
        """The contract on a real server, each test in its own namespace (fresh store).

        The tamper tests are left out: a real server cannot edit an event in place.
        """

        test_verify_detects_edited_event = None  # type: ignore[assignment]
        test_verify_detects_removed_event = None  # type: ignore[assignment]
        test_verify_detects_reordered_events = None  # type: ignore[assignment]

        @pytest.fixture
        def store_url(self) -> str:
            sep = "&" if "?" in REAL_URL else "?"
            return f"{REAL_URL}{sep}namespace=t{uuid.uuid4().hex[:12]}-"


@pytest.fixture(scope="module", autouse=True)
def _note_real_server(request: pytest.FixtureRequest) -> None:
    """Say once, in the terminal, whether the real-server class exists in this run."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    if REAL_URL:
        reporter.write_line("esdb: TestEsdbRealServer runs against ORCHESTRAIL_TEST_ESDB_URL")
    else:
        reporter.write_line("esdb: ORCHESTRAIL_TEST_ESDB_URL is not set; only the in-process "
                            "stand-in server was used (no real EventStoreDB run)")


# ---- helpers ------------------------------------------------------------------------------


@pytest.fixture
async def store(fake_esdb: FakeEventStoreDB) -> AsyncIterator[EsdbStore]:
    s = await open_store(fake_esdb.url, config=Config())
    assert isinstance(s, EsdbStore)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def raw(fake_esdb: FakeEventStoreDB) -> AsyncIterator[AsyncEventStoreDBClient]:
    client = AsyncEventStoreDBClient(fake_esdb.url)
    await client.connect()
    try:
        yield client
    finally:
        await client.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- connection errors ----------------------------------------------------------------------


async def test_unreachable_server_fails_fast_with_masked_password() -> None:
    url = f"esdb://admin:s3cr3t-pw@127.0.0.1:{_closed_port()}?Tls=false&connectTimeout=2"
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        await open_store(url, config=Config())
    elapsed = time.monotonic() - started
    assert elapsed < 5, f"took {elapsed:.1f}s to report an unreachable server"
    message = str(info.value)
    assert "s3cr3t-pw" not in message
    assert "***" in message and "unreachable" in message and "127.0.0.1" in message


async def test_unroutable_host_respects_connect_timeout() -> None:
    # 10.255.255.1 is not expected to answer: whatever the network does, we give up in time
    url = "kurrentdb://10.255.255.1:2113?Tls=false&connectTimeout=1.5"
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="unreachable"):
        await open_store(url, config=Config())
    assert time.monotonic() - started < 4


async def test_bad_url_options_are_config_errors() -> None:
    from eventstore.errors import ConfigError

    with pytest.raises(ConfigError, match="connectTimeout|connecttimeout"):
        await open_store("esdb://127.0.0.1:1?Tls=false&connectTimeout=soon", config=Config())
    with pytest.raises(ConfigError, match="Unknown field"):
        await open_store("esdb://127.0.0.1:1?Tls=false&Bogus=1", config=Config())


async def test_server_gone_mid_use_is_store_unavailable(fake_esdb: FakeEventStoreDB) -> None:
    s = await open_store(fake_esdb.url + "&timeout=3", config=Config())
    try:
        await s.append("run-1", batch(2))
        fake_esdb.stop()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="EventStoreDB at esdb://127.0.0.1"):
            await s.append("run-1", batch(1))
        with pytest.raises(StoreUnavailable):
            await s.read_page(Query())
        assert time.monotonic() - started < 10
    finally:
        await s.close()


# ---- mapping ------------------------------------------------------------------------------


async def test_metadata_mapping_round_trip(store: EsdbStore,
                                          raw: AsyncEventStoreDBClient) -> None:
    uuid_id = str(uuid.uuid4())
    sent = [
        NewEvent(type="tool.completed", data={"b": [1, 2], "a": "é"}, actor="agent:coder",
                 correlation_id="run-9", causation_id="cause-1", id=uuid_id,
                 metadata={"trace": "t-1"}),
        NewEvent(type="tool.requested", id="not-a-uuid:42"),
    ]
    await store.append("session-7", sent)
    records = await raw.get_stream("session-7")
    assert [r.stream_position for r in records] == [0, 1]
    first, second = records
    assert first.id == uuid.UUID(uuid_id)
    assert second.id == esdb_id("not-a-uuid:42") and second.id.version == 5
    assert first.type == "tool.completed" and first.content_type == "application/json"
    assert first.data == canonical_json(sent[0].data).encode()
    meta = json.loads(first.metadata)
    assert meta["$correlationId"] == "run-9" and meta["$causationId"] == "cause-1"
    env = meta["orchestrail"]
    assert env["id"] == uuid_id and env["actor"] == "agent:coder" and env["base"] == 0
    assert env["occurred_at"] == format_ts(sent[0].occurred_at)
    assert env["metadata"] == {"trace": "t-1"} and env["prev_hash"] is None
    assert "$correlationId" not in json.loads(second.metadata)
    got = await stream_events(store, "session-7")
    assert [e.id for e in got] == [uuid_id, "not-a-uuid:42"]
    assert [e.position for e in got] == [first.commit_position, second.commit_position]
    assert env["hash"] == got[0].hash and json.loads(second.metadata)["orchestrail"][
        "prev_hash"] == got[0].hash
    assert_chain(got)


async def test_retention_stream_is_mapped_and_soft_deleted_events_hidden(
    store: EsdbStore, raw: AsyncEventStoreDBClient, fake_esdb: FakeEventStoreDB
) -> None:
    await store.append("task-1", batch(3))
    await store.append("task-2", batch(1))
    await store.apply_retention(RetentionPolicy(max_streams=1), dry_run=False)
    # ESDB reserves '$' names: the record lives in '_orchestrail-retention'
    names = {r.stream_name async for r in await raw.read_all()}
    assert RESERVED_PREFIX + "retention" in names and RETENTION_STREAM not in names
    # the deleted events are still in $all (as on a real server until it scavenges) ...
    raw_task1 = [r async for r in await raw.read_all() if r.stream_name == "task-1"]
    assert len(raw_task1) == 3
    # ... but no read of ours shows them
    assert {e.stream for e in await all_events(store)} == {"task-2", RETENTION_STREAM}
    assert [s.stream for s in await store.streams()] == ["task-2", RETENTION_STREAM]
    assert (await store.verify()).ok
    # after a scavenge nothing changes for the reader
    assert fake_esdb.scavenge() == 2  # the last event of a stream is kept, hidden
    assert {e.stream for e in await all_events(store)} == {"task-2", RETENTION_STREAM}
    # a removed stream's name can be used again: versions restart at 0, ESDB revisions go on
    r = await store.append("task-1", batch(2), expected_version=NO_STREAM)
    assert (r.first_version, r.last_version) == (0, 1)
    revisions = [e.stream_position for e in await raw.get_stream("task-1")]
    assert revisions == [3, 4]
    again = await stream_events(store, "task-1")
    assert [e.version for e in again] == [0, 1]
    assert [e.version for e in await stream_events(store, "task-1", 1)] == [1]
    assert_chain(again)
    report = await store.verify()
    assert report.ok, report.problems


async def test_foreign_events_are_ignored(store: EsdbStore,
                                          raw: AsyncEventStoreDBClient) -> None:
    await raw.append_to_stream("other-app", current_version=StreamState.NO_STREAM,
                               events=[EsdbNewEvent(type="Shipped", data=b'{"x":1}')])
    await store.append("run-1", batch(2))
    await raw.append_to_stream("run-2", current_version=StreamState.NO_STREAM,
                               events=[EsdbNewEvent(type="Plain", data=b"{}")])
    assert [e.stream for e in await all_events(store)] == ["run-1", "run-1"]
    assert [s.stream for s in await store.streams()] == ["run-1"]
    last = (await all_events(store))[-1].position
    assert await store.head_position() == last
    with pytest.raises(StoreError, match="not written by orchestrail"):
        await store.append("run-2", batch(1))


# ---- expected versions, conflicts, idempotency ------------------------------------------------


async def test_wrong_expected_version_mapping(store: EsdbStore, fake_esdb: FakeEventStoreDB,
                                              raw: AsyncEventStoreDBClient) -> None:
    await store.append("run-1", batch(3))
    writes = fake_esdb.appends
    with pytest.raises(WrongExpectedVersion) as info:
        await store.append("run-1", batch(1), expected_version=0)
    assert (info.value.stream, info.value.expected, info.value.actual) == ("run-1", 0, 2)
    with pytest.raises(WrongExpectedVersion) as info:
        await store.append("run-1", batch(1), expected_version=NO_STREAM)
    assert info.value.actual == 2
    assert fake_esdb.appends == writes, "a refused append reached the server"
    assert await raw.get_current_version("run-1") == 2


async def test_two_clients_race_on_one_stream(fake_esdb: FakeEventStoreDB) -> None:
    """Separate store objects (as separate processes would) re-plan on WrongCurrentVersion."""
    stores = [await open_store(fake_esdb.url, config=Config()) for _ in range(3)]
    try:
        async def writer(s: Any, w: int) -> None:
            for k in range(15):
                await s.append("run-shared", [NewEvent(type="test.x", data={"w": w, "k": k})],
                               expected_version=ANY)

        await asyncio.gather(*(writer(s, w) for w, s in enumerate(stores)))
        got = await stream_events(stores[0], "run-shared")
        assert len(got) == 45
        assert_chain(got)
        for w in range(3):
            assert [e.data["k"] for e in got if e.data["w"] == w] == list(range(15))
        assert (await stores[1].verify()).ok
    finally:
        for s in stores:
            await s.close()


async def test_retry_from_another_client_is_idempotent(fake_esdb: FakeEventStoreDB) -> None:
    a = await open_store(fake_esdb.url, config=Config())
    b = await open_store(fake_esdb.url, config=Config())
    try:
        sent = batch(3)
        r1 = await a.append("run-1", sent, expected_version=NO_STREAM)
        writes = fake_esdb.appends
        assert await b.append("run-1", sent, expected_version=NO_STREAM) == r1
        assert await b.append("run-1", sent) == r1
        assert fake_esdb.appends == writes
    finally:
        await a.close()
        await b.close()


async def test_namespaces_isolate_stores_on_one_server(fake_esdb: FakeEventStoreDB,
                                                       raw: AsyncEventStoreDBClient) -> None:
    one = await open_store(fake_esdb.url + "&namespace=one-", config=Config())
    two = await open_store(fake_esdb.url + "&namespace=two-", config=Config())
    try:
        await one.append("run-1", batch(2))
        await two.append("run-1", batch(1))
        await one.apply_retention(RetentionPolicy(max_streams=0), dry_run=False)
        assert [e.stream for e in await all_events(two)] == ["run-1"]
        assert await two.stream_version("run-1") == 0
        assert await one.stream_version("run-1") is None
        assert [s.stream for s in await one.streams()] == [RETENTION_STREAM]
        names = {r.stream_name async for r in await raw.read_all()}
        assert {"two-run-1", "one-run-1", "one-" + RESERVED_PREFIX + "retention"} <= names
        assert (await one.verify()).ok and (await two.verify()).ok
    finally:
        await one.close()
        await two.close()


async def test_subscription_wakes_up_on_append(store: EsdbStore) -> None:
    """With a long poll interval, only the subscribe_to_all wake-up can deliver quickly."""
    got: list[str] = []

    async def follow() -> None:
        async for ev in store.subscribe(Query(types=("tool.*",)), poll_interval=30):
            got.append(ev.id)

    task = asyncio.create_task(follow())
    try:
        await asyncio.sleep(0.3)
        sent = [NewEvent(type="tool.completed"), NewEvent(type="model.called")]
        started = time.monotonic()
        await store.append("run-1", sent)
        while not got and time.monotonic() - started < 5:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        assert got == [sent[0].id]
        assert time.monotonic() - started < 5
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
