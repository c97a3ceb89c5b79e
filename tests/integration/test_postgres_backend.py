"""PostgreSQL-specific behaviour the contract suite cannot express, on the real server.

Migrations (idempotent, concurrent, newer or edited history), the append-only trigger and
role, exact hashes through JSONB-hostile payloads, connection errors, a connection killed
mid-append, LISTEN/NOTIFY wake-ups with the poll fallback, and 8 concurrent writers with
a subscriber that must see every event exactly once.
"""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest

from eventstore.backends.pg_schema import known_migrations
from eventstore.backends.postgres import PostgresStore, migrate
from eventstore.canonical import canonical_json, chain_hash
from eventstore.config import Config
from eventstore.errors import ConfigError, StoreUnavailable, WrongExpectedVersion
from eventstore.model import NO_STREAM, NewEvent, Query, RecordedEvent
from eventstore.retention import RetentionPolicy
from eventstore.urls import open_store
from tests import pg_support

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    with pg_support.fresh_database() as url:
        yield url


@pytest.fixture
def url(pg_database: str) -> str:
    return pg_support.with_schema(pg_database, pg_support.new_schema())


@pytest.fixture
async def store(url: str) -> AsyncIterator[PostgresStore]:
    s = await PostgresStore.open(url, create=True)
    try:
        yield s
    finally:
        await s.close()


def schema_of(url: str) -> str:
    return url.rsplit("schema=", 1)[1]


async def sql(url: str, query: str, params: Any = None, *, replica: bool = False) -> list[Any]:
    """Raw SQL in the store's schema as the superuser (``replica`` turns triggers off)."""
    base = url.split("?", 1)[0]
    async with await psycopg.AsyncConnection.connect(
        base, autocommit=True, options=f"-c search_path={schema_of(url)}"
    ) as conn:
        if replica:
            await conn.execute("SET session_replication_role = replica")
        cur = await conn.execute(query.encode(), params)
        return await cur.fetchall() if cur.description else []


def ev(type_: str = "test.happened", **kw: Any) -> NewEvent:
    return NewEvent(type=type_, **kw)


# ---- migrations -----------------------------------------------------------------------------


async def test_migrate_applies_once_then_nothing(url: str) -> None:
    names = [m.name for m in known_migrations()]
    assert await migrate(url) == names
    assert await migrate(url) == []
    rows = await sql(url, "SELECT version, name FROM orchestrail_schema_migrations ORDER BY 1")
    assert [(v, n) for v, n in rows] == [(m.version, m.name) for m in known_migrations()]
    s = await PostgresStore.open(url, create=False)  # migrated: create=False is fine now
    await s.close()


async def test_concurrent_openers_and_migrators_do_not_race(url: str) -> None:
    migrated, stores = await asyncio.gather(
        asyncio.gather(*(migrate(url) for _ in range(6))),
        asyncio.gather(*(open_store(url, config=Config()) for _ in range(6))),
    )
    try:
        # every migration ran exactly once (by a migrator or by an opener), without errors
        rows = await sql(url, "SELECT name FROM orchestrail_schema_migrations")
        assert sorted(n for (n,) in rows) == sorted(m.name for m in known_migrations())
        assert len([name for names in migrated for name in names]) <= len(known_migrations())
        firsts = await asyncio.gather(*(s.append(f"run-{i}", [ev()])
                                        for i, s in enumerate(stores)))
        assert sorted(r.first_position for r in firsts) == list(range(1, 7))
    finally:
        for s in stores:
            await s.close()


async def test_unmigrated_schema_with_create_false_names_the_versions(url: str) -> None:
    with pytest.raises(StoreUnavailable) as err:
        await PostgresStore.open(url, create=False)
    msg = str(err.value)
    latest = known_migrations()[-1].version
    assert "no orchestrail schema" in msg and f"needs version {latest}" in msg
    assert "orchestrail store migrate" in msg and "\n" not in msg
    # and nothing was created behind the refusal
    rows = await sql(url.split("?")[0] + "?schema=public",
                     "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema_of(url),))
    assert rows == [(0,)]


async def test_newer_schema_is_refused_naming_both_versions(url: str) -> None:
    await migrate(url)
    latest = known_migrations()[-1].version
    await sql(url, "INSERT INTO orchestrail_schema_migrations (version, name, checksum) "
                   "VALUES (%s, %s, 'x')", (latest + 1, f"{latest + 1:04d}_from_the_future"))
    for create in (True, False):
        with pytest.raises(StoreUnavailable) as err:
            await PostgresStore.open(url, create=create)
        msg = str(err.value)
        assert f"version {latest + 1}" in msg and f"up to {latest}" in msg
        assert "upgrade orchestrail" in msg
    with pytest.raises(StoreUnavailable, match="newer than this orchestrail"):
        await migrate(url)


async def test_edited_migration_history_is_refused(url: str) -> None:
    await migrate(url)
    await sql(url, "UPDATE orchestrail_schema_migrations SET checksum = 'edited' "
                   "WHERE version = 1")
    with pytest.raises(StoreUnavailable, match="differs from the file"):
        await PostgresStore.open(url, create=True)


def test_migration_files_are_numbered_and_packaged() -> None:
    migrations = known_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert all(m.sql.strip() for m in migrations)


# ---- append-only ----------------------------------------------------------------------------


async def test_trigger_refuses_update_delete_truncate(store: PostgresStore, url: str) -> None:
    await store.append("run-1", [ev(), ev()])
    for stmt in (
        "UPDATE orchestrail_events SET data_json = '{}' WHERE position = 1",
        "DELETE FROM orchestrail_events WHERE position = 1",
        "TRUNCATE orchestrail_events",
        "UPDATE orchestrail_head SET position = 0",
        "DELETE FROM orchestrail_head",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"refused|forward"):
            await sql(url, stmt)
    assert len([e async for e in store.read()]) == 2
    assert (await store.verify()).ok
    # the retention setting lets a DELETE through, in that transaction only
    rows = await sql(url, "WITH _ AS (SELECT set_config('orchestrail.retention', 'on', true)) "
                          "SELECT 1 FROM _")
    assert rows == [(1,)]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        await sql(url, "DELETE FROM orchestrail_events WHERE position = 1")


async def test_retention_deletes_and_records_in_one_transaction(store: PostgresStore) -> None:
    for i in range(4):
        await store.append(f"session-{i}", [ev(), ev()])
    report = await store.apply_retention(RetentionPolicy(max_streams=1), dry_run=False)
    assert [r.stream for r in report.removed] == ["session-0", "session-1", "session-2"]
    assert report.record is not None and report.record.position == 9
    left = [e async for e in store.read()]
    assert [e.stream for e in left] == ["session-3", "session-3", "$retention"]
    assert await store.head_position() == 9
    verify = await store.verify()
    assert verify.ok, verify.problems
    assert verify.removed_streams_accounted == 3
    nxt = await store.append("run-after", [ev()])
    assert nxt.first_position == 10  # positions never reused after retention


async def test_append_only_role(store: PostgresStore, url: str) -> None:
    """The GRANTs of docs/backends.md: appends and reads work, deletes are impossible."""
    role = f"orchestrail_app_{uuid.uuid4().hex[:8]}"
    schema = schema_of(url)
    await store.append("run-1", [ev()])
    statements = [
        f"CREATE ROLE {role} LOGIN",
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        f"GRANT SELECT, INSERT ON {schema}.orchestrail_events TO {role}",
        f"GRANT SELECT, UPDATE ON {schema}.orchestrail_head TO {role}",
        f"GRANT SELECT ON {schema}.orchestrail_schema_migrations TO {role}",
        f"REVOKE UPDATE, DELETE, TRUNCATE ON {schema}.orchestrail_events FROM {role}",
    ]
    for stmt in statements:
        await sql(url, stmt)
    netloc = url.split("://", 1)[1].split("@", 1)[1]
    app_url = f"postgresql://{role}@{netloc}"
    try:
        app = await PostgresStore.open(app_url, create=False)
        try:
            r = await app.append("run-1", [ev()], expected_version=0)
            assert r.first_position == 2
            assert [e.position async for e in app.read()] == [1, 2]
            with pytest.raises(StoreUnavailable, match="permission denied"):
                await app.apply_retention(RetentionPolicy(max_streams=0), dry_run=False)
            assert await app.head_position() == 2  # the failed retention left nothing
        finally:
            await app.close()
        async with await psycopg.AsyncConnection.connect(
            app_url.split("?")[0], autocommit=True, options=f"-c search_path={schema}"
        ) as conn:
            await conn.execute("SELECT set_config('orchestrail.retention', 'on', false)")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute("DELETE FROM orchestrail_events")
    finally:
        await sql(url, f"DROP OWNED BY {role}")
        await sql(url, f"DROP ROLE {role}")


# ---- exact hashes through JSONB -----------------------------------------------------------

AWKWARD: dict[str, Any] = {
    "floats": [1e300, -1e-300, 5e-324, 1.7976931348623157e308, 0.1 + 0.2, 1.0, -0.0, 1e16,
               123456789.123456789, 2.5e-7],
    "ints": [0, -1, 2**63, -(2**70), 10**30],
    "unicode": ["é", "e\u0301", "日本語", "🦀👩‍👩‍👧", "שלום", "\u200b", "\U0010ffff"],
    "nul": "a\u0000b",
    "escapes": ["\\u0000", "\\", '"', "\n\t\r", "\u001f", "</script>"],
    "keys": {"b": 1, "a": 2, "é": 3, "Z": 4, "aa": 5, "": 6, "🦀": 7, "10": 8, "9": 9},
    "nested": {"l1": {"l2": {"l3": [[[{"deep": [None, True, False, {}]}]]]}}},
    "empty": {"list": [], "obj": {}, "str": ""},
}


async def test_hash_round_trip_with_awkward_json(store: PostgresStore, url: str) -> None:
    sent = [ev(data=AWKWARD, metadata={"m": AWKWARD["floats"], "ü": AWKWARD["nul"]}),
            ev(data={"x": 1e300}), ev(data={"x": -0.0, "y": math.pi})]
    await store.append("run-awkward", sent)
    reopened = await PostgresStore.open(url, create=False)
    try:
        got = [e async for e in reopened.read_stream("run-awkward")]
        for s, g in zip(sent, got, strict=True):
            assert g.data == s.data and g.metadata == s.metadata
            assert canonical_json(g.data) == canonical_json(s.data)  # same text, same types
            assert canonical_json(g.metadata) == canonical_json(s.metadata)
            assert chain_hash(g.hash_fields(), g.prev_hash) == g.hash
        assert isinstance(got[1].data["x"], float) and got[1].data["x"] == 1e300
        assert math.copysign(1.0, got[2].data["x"]) == -1.0  # -0.0 survived
        report = await reopened.verify()
        assert report.ok, report.problems
    finally:
        await reopened.close()
    # the JSONB copy is there for SQL, including documents JSONB cannot hold verbatim
    rows = await sql(url, "SELECT data->'keys'->>'🦀', data->>'nul', jsonb_typeof(data->'floats')"
                          " FROM orchestrail_events WHERE position = 1")
    assert rows == [("7", "a\ufffdb", "array")]


# ---- errors ---------------------------------------------------------------------------------


async def test_unreachable_host_is_one_clear_line() -> None:
    bad = "postgresql://root:s3cret-pw@127.0.0.1:1/test"
    with pytest.raises(StoreUnavailable) as err:
        await open_store(bad, config=Config())
    msg = str(err.value)
    assert "cannot connect" in msg and "127.0.0.1:1" in msg and "refused" in msg
    assert "s3cret-pw" not in msg and "***" in msg and "\n" not in msg


async def test_connect_timeout_from_the_url() -> None:
    bad = "postgresql://root@10.255.255.1:5432/test?connect_timeout=1"
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(StoreUnavailable, match="cannot connect"):
        await open_store(bad, config=Config())
    assert loop.time() - t0 < 8


async def test_missing_database_and_unknown_role() -> None:
    db = pg_support.with_database(pg_support.PG_URL, f"nope_{uuid.uuid4().hex[:8]}")
    with pytest.raises(StoreUnavailable, match=r"does not exist.*createdb"):
        await open_store(db, config=Config())
    netloc = pg_support.PG_URL.split("://", 1)[1].split("@", 1)[-1].split("/")[0]
    with pytest.raises(StoreUnavailable) as err:
        await open_store(f"postgresql://ghost_user:hunter2xyz@{netloc}/test", config=Config())
    assert "ghost_user" in str(err.value) and "hunter2xyz" not in str(err.value)


def test_bad_url_options_are_config_errors() -> None:
    from eventstore.backends.pg_schema import Target

    with pytest.raises(ConfigError, match="schema"):
        Target.parse("postgresql://root@127.0.0.1/test?schema=Robert'); DROP")
    with pytest.raises(ConfigError, match="pool"):
        Target.parse("postgresql://root@127.0.0.1/test?pool_max=0")


async def test_connection_killed_mid_append_writes_nothing(store: PostgresStore, url: str
                                                         ) -> None:
    await store.append("run-1", [ev()])
    base = url.split("?")[0]
    async with await psycopg.AsyncConnection.connect(
        base, options=f"-c search_path={schema_of(url)}"
    ) as holder:
        # hold the head lock so the append is caught inside its transaction
        await holder.execute("SELECT position FROM orchestrail_head FOR UPDATE")
        pending = asyncio.ensure_future(  # noqa: RUF006 - awaited below
            store.append("run-1", [ev() for _ in range(50)]))
        pid = None
        for _ in range(200):
            rows = await sql(url, "SELECT pid FROM pg_stat_activity WHERE datname = "
                                  "current_database() AND wait_event_type = 'Lock' "
                                  "AND query LIKE '%%orchestrail_head FOR UPDATE%%'")
            if rows:
                pid = rows[0][0]
                break
            await asyncio.sleep(0.02)
        assert pid is not None, "the append never reached the head lock"
        await sql(url, "SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(StoreUnavailable) as err:
            await pending
        await holder.rollback()
    msg = str(err.value)
    assert "append to 'run-1' failed" in msg and "retry" in msg and "\n" not in msg
    assert [e.version async for e in store.read_stream("run-1")] == [0]
    assert await store.head_position() == 1
    # the pool dropped the dead connection: the store keeps working
    r = await store.append("run-1", [ev()], expected_version=0)
    assert (r.first_version, r.first_position) == (1, 2)


async def test_failed_appends_leave_no_position_holes(store: PostgresStore) -> None:
    await store.append("run-1", [ev()])
    with pytest.raises(WrongExpectedVersion):
        await store.append("run-1", [ev(), ev()], expected_version=NO_STREAM)
    r = await store.append("run-2", [ev()])
    assert r.first_position == 2
    assert (await store.verify()).ok


# ---- wake-ups and concurrency --------------------------------------------------------------


async def test_notify_wakes_a_subscriber_long_before_its_poll(store: PostgresStore,
                                                              url: str) -> None:
    reader = await PostgresStore.open(url, create=False)
    got: list[RecordedEvent] = []

    async def follow() -> None:
        async for e in reader.subscribe(poll_interval=30.0):
            got.append(e)

    task = asyncio.create_task(follow())
    try:
        await asyncio.sleep(0.5)  # subscriber caught up and is now waiting on its 30 s poll
        loop = asyncio.get_running_loop()
        for i in range(3):
            t0 = loop.time()
            await store.append("run-1", [ev()])
            while len(got) < i + 1:
                assert loop.time() - t0 < 5, "NOTIFY did not wake the subscriber"
                await asyncio.sleep(0.005)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await reader.close()


async def test_lost_listener_falls_back_to_polling(store: PostgresStore, url: str) -> None:
    reader = await PostgresStore.open(url, create=False)
    got: list[RecordedEvent] = []

    async def follow() -> None:
        async for e in reader.subscribe(poll_interval=0.2):
            got.append(e)

    task = asyncio.create_task(follow())
    try:
        await asyncio.sleep(0.4)
        # kill the LISTEN connection: notifications are lost until it reconnects
        await sql(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND query LIKE 'LISTEN %%'")
        await store.append("run-1", [ev() for _ in range(3)])
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while len(got) < 3:
            assert loop.time() - t0 < 5, "the subscriber hung after losing its listener"
            await asyncio.sleep(0.01)
        assert task.done() is False
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await reader.close()


@pytest.mark.timeout(180)
async def test_eight_writers_and_a_subscriber_exactly_once(store: PostgresStore,
                                                           url: str) -> None:
    reader = await PostgresStore.open(url, create=False)
    rng = random.Random(8)
    got: list[RecordedEvent] = []

    async def follow() -> None:
        async for e in reader.subscribe(poll_interval=0.5):
            got.append(e)

    async def writer(w: int) -> int:
        n = 0
        for k in range(40):
            size = rng.randint(1, 12)
            if k % 4 == 0:  # contend on one shared stream with expected versions
                while True:
                    v = await store.stream_version("run-shared")
                    try:
                        await store.append("run-shared", [ev(data={"w": w, "k": k})],
                                           expected_version=NO_STREAM if v is None else v)
                        n += 1
                        break
                    except WrongExpectedVersion:
                        continue
            else:
                await store.append(f"session-{w}", [ev(data={"w": w, "k": k, "i": i})
                                                    for i in range(size)])
                n += size
        return n

    task = asyncio.create_task(follow())
    try:
        counts = await asyncio.gather(*(writer(w) for w in range(8)))
        total = sum(counts)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while len(got) < total:
            assert loop.time() - t0 < 30, f"subscriber got {len(got)} of {total}"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        everything = [e async for e in store.read()]
        assert len(everything) == total
        assert [e.id for e in got] == [e.id for e in everything]  # every one, exactly once
        assert [e.position for e in got] == list(range(1, total + 1))  # gapless, in order
        for w in range(8):
            evs = [e async for e in store.read(Query(stream=f"session-{w}"))]
            batches: dict[int, list[int]] = {}
            for e in evs:
                batches.setdefault(e.data["k"], []).append(e.position)
            for positions in batches.values():  # a batch is contiguous: never interleaved
                assert positions == list(range(positions[0], positions[0] + len(positions)))
        assert (await store.verify()).ok
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await reader.close()
