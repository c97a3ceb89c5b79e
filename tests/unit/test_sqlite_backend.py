"""What only the SQLite backend has: its file format, its triggers, its error messages, and
group commit. Real files, real sqlite3 connections and real processes throughout.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventstore.backends.sqlite import SQLiteStore
from eventstore.backends.sqlite_query import MAX_ARMS, prefix_upper
from eventstore.backends.sqlite_schema import APPLICATION_ID, SCHEMA_VERSION
from eventstore.config import Config
from eventstore.errors import (
    ConfigError,
    DuplicateEventId,
    StoreCorrupted,
    StoreUnavailable,
    WrongExpectedVersion,
)
from eventstore.model import NO_STREAM, NewEvent, Query
from eventstore.retention import RetentionPolicy
from eventstore.urls import open_store


def ev(type_: str = "test.happened", **kw: object) -> NewEvent:
    return NewEvent(type=type_, **kw)  # type: ignore[arg-type]


async def open_path(path: Path, query: str = "", create: bool = True) -> SQLiteStore:
    store = await open_store(f"sqlite:///{path}{query}", config=Config(), create=create)
    assert isinstance(store, SQLiteStore)
    return store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = await open_path(tmp_path / "events.db")
    try:
        yield s
    finally:
        await s.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(path), isolation_level=None, timeout=0.1)


# ---- file format -----------------------------------------------------------------------------


async def test_schema_identity_wal_and_durability_defaults(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "events.db"  # parents are created
    s = await open_path(path)
    try:
        await s.append("run-1", [ev()])
        sync = await s._writer.run(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
        assert sync == 2  # FULL
    finally:
        await s.close()
    c = raw(path)
    try:
        assert c.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        names = {r[0] for r in c.execute("SELECT name FROM sqlite_master")}
        assert {"events", "events_id", "events_stream_version", "events_correlation",
                "events_type", "events_actor", "events_occurred", "events_no_update",
                "events_no_delete", "retention_guard"} <= names
    finally:
        c.close()
    s = await open_path(path, "?synchronous=normal")
    try:
        assert await s._writer.run(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == 1
        assert [e.type async for e in s.read()] == ["test.happened"]
    finally:
        await s.close()


@pytest.mark.parametrize("query", ["?synchronous=off", "?busy_timeout=soon", "?journal=wal"])
async def test_bad_url_parameters_are_config_errors(tmp_path: Path, query: str) -> None:
    with pytest.raises(ConfigError, match="SQLite store .*events.db"):
        await open_path(tmp_path / "events.db", query)
    assert not (tmp_path / "events.db").exists()


async def test_triggers_refuse_update_and_delete(store: SQLiteStore) -> None:
    await store.append("run-1", [ev(data={"n": 1}), ev()])
    store_path = store.path
    c = raw(store_path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only: UPDATE refused"):
            c.execute("UPDATE events SET data = '{}' WHERE position = 1")
        with pytest.raises(sqlite3.IntegrityError, match="append-only: DELETE refused"):
            c.execute("DELETE FROM events WHERE position = 2")
        with pytest.raises(sqlite3.IntegrityError, match="append-only: DELETE refused"):
            c.execute("DELETE FROM events")
    finally:
        c.close()
    got = [e async for e in store.read()]
    assert [e.position for e in got] == [1, 2] and got[0].data == {"n": 1}
    assert (await store.verify()).ok


async def test_retention_deletes_in_one_transaction_and_leaves_no_guard(
        store: SQLiteStore) -> None:
    for i in range(4):
        await store.append(f"task-{i}", [ev(), ev()])
    report = await store.apply_retention(RetentionPolicy(max_streams=1), dry_run=False)
    assert [r.stream for r in report.removed] == ["task-0", "task-1", "task-2"]
    assert report.record is not None and report.record.position == 9
    assert [i.stream for i in await store.streams()] == ["task-3", "$retention"]
    c = raw(store.path)
    try:
        assert c.execute("SELECT count(*) FROM retention_guard").fetchone()[0] == 0
        with pytest.raises(sqlite3.IntegrityError):  # the guard is gone: deletes refused again
            c.execute("DELETE FROM events")
    finally:
        c.close()
    assert (await store.verify()).ok
    assert await store.head_position() == 9


async def test_head_position_remembers_events_cut_off_the_end(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    s = await open_path(path)
    await s.append("run-1", [ev(), ev(), ev()])
    await s.close()
    c = raw(path)
    c.execute("DROP TRIGGER events_no_delete")
    c.execute("DELETE FROM events WHERE position = 3")
    c.close()
    s = await open_path(path)
    try:
        assert await s.head_position() == 3
        report = await s.verify()
        assert not report.ok and report.first_problem is not None
        assert report.first_problem.kind == "truncated"
        r = await s.append("run-1", [ev()])  # positions are never reused
        assert r.first_position == 4
    finally:
        await s.close()


# ---- bad files -------------------------------------------------------------------------------


async def test_missing_file_without_create(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "events.db"
    with pytest.raises(StoreUnavailable, match=f"{path} does not exist"):
        await open_path(path, create=False)
    assert not path.parent.exists()


async def test_not_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    path.write_text('{"this": "is JSON, not SQLite"}\n' * 100)
    before = digest(path)
    with pytest.raises(StoreUnavailable, match=f"{path} is not a SQLite database"):
        await open_path(path)
    assert digest(path) == before


async def test_a_directory_at_the_path(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="is a directory"):
        await open_path(tmp_path)


async def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    c = raw(path)
    c.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    c.close()
    before = digest(path)
    with pytest.raises(StoreUnavailable, match="not an orchestrail event store"):
        await open_path(path)
    assert digest(path) == before


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    s = await open_path(path)
    await s.close()
    c = raw(path)
    c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    c.close()
    with pytest.raises(StoreUnavailable, match=r"schema version 2, newer .*upgrade orchestrail"):
        await open_path(path)


async def test_corrupted_file_is_store_corrupted_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    s = await open_path(path)
    for i in range(20):
        await s.append(f"run-{i}", [ev(data={"pad": "x" * 2000}) for _ in range(5)])
    await s.close()  # the last connection checkpoints the WAL into the file
    data = bytearray(path.read_bytes())
    assert data[:16] == b"SQLite format 3\x00" and len(data) > 8 * 4096
    data[4096:] = b"\xa5" * (len(data) - 4096)  # every page but the first is garbage
    path.write_bytes(bytes(data))
    with pytest.raises(StoreCorrupted, match=f"SQLite store {path} is corrupted"):
        s = await open_path(path)
        try:
            [e async for e in s.read()]
        finally:
            await s.close()


async def test_locked_beyond_busy_timeout_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    s = await open_path(path, "?busy_timeout=200")
    try:
        await s.append("run-1", [ev()])
        holder = raw(path)
        holder.execute("BEGIN IMMEDIATE")  # another connection holds the write lock
        try:
            with pytest.raises(StoreUnavailable,
                               match=f"{path} is locked by another connection .*0.2 s"):
                await s.append("run-1", [ev(), ev()])
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert [e.version async for e in s.read_stream("run-1")] == [0]
        r = await s.append("run-1", [ev()], expected_version=0)  # usable again
        assert (r.first_version, r.first_position) == (1, 2)
    finally:
        await s.close()


READ_ONLY_PROBE = textwrap.dedent("""
    import asyncio, sys
    from eventstore.config import Config
    from eventstore.model import NewEvent
    from eventstore.urls import open_store

    async def main():
        try:
            store = await open_store(sys.argv[1], config=Config())
            await store.append("run-1", [NewEvent(type="test.happened")])
            await store.close()
        except Exception as exc:
            print(f"{type(exc).__name__}: {exc}")
            sys.exit(3)
        print("appended")

    asyncio.run(main())
""")


def run_without_root_override(url: str) -> subprocess.CompletedProcess[str]:
    """Run the probe so file permissions apply, even when the tests run as root.

    root ignores permission bits through CAP_DAC_OVERRIDE; dropping that capability (and
    DAC_READ_SEARCH) for the child makes a 0444 file read-only to it, as for any user.
    """
    cmd = [sys.executable, "-c", READ_ONLY_PROBE, url]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "running as root needs util-linux setpriv to drop CAP_DAC_OVERRIDE"
        drop = "-dac_override,-dac_read_search"
        cmd = [setpriv, "--bounding-set", drop, "--inh-caps", drop, *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("what", ["file", "directory"])
async def test_read_only_file_or_directory(tmp_path: Path, what: str) -> None:
    folder = tmp_path / "store"
    path = folder / "events.db"
    s = await open_path(path)
    await s.append("run-0", [ev()])
    await s.close()
    before = digest(path)
    target = path if what == "file" else folder
    mode = target.stat().st_mode
    target.chmod(0o444 if what == "file" else 0o555)
    try:
        done = run_without_root_override(f"sqlite:///{path}")
    finally:
        target.chmod(mode)
    assert done.returncode == 3, done.stdout + done.stderr
    line = done.stdout.strip()
    assert line.startswith("StoreUnavailable: ") and "\n" not in line
    assert str(path) in line and "read-only" in line
    assert digest(path) == before


# ---- group commit ----------------------------------------------------------------------------


async def test_group_commit_many_appends_few_transactions(store: SQLiteStore) -> None:
    writer = store._writer
    results = await asyncio.gather(*(store.append(f"run-{i % 8}", [ev(data={"i": i})])
                                     for i in range(64)))
    assert writer.appends == 64
    assert writer.transactions <= 2, writer.transactions  # the first alone, then the rest
    positions = sorted(r.first_position for r in results)
    assert positions == list(range(1, 65))
    got = [e async for e in store.read()]
    assert [e.data["i"] for e in got] == [
        r_i for _, r_i in sorted((r.first_position, i) for i, r in enumerate(results))]
    assert (await store.verify()).ok


async def test_group_commit_isolates_failures_in_savepoints(store: SQLiteStore) -> None:
    dup = ev()
    await store.append("run-0", [dup])
    await store.append("run-1", [ev()])
    ok_a, wrong, dupe, ok_b, chained, ok_c = await asyncio.gather(
        store.append("run-2", [ev(), ev()], expected_version=NO_STREAM),
        store.append("run-1", [ev()], expected_version=5),
        store.append("run-3", [ev(), dup, ev()]),
        store.append("run-2", [ev()], expected_version=1),  # sees ok_a, same transaction
        store.append("run-4", [ev()], expected_version=NO_STREAM),
        store.append("run-4", [ev()], expected_version=0),
        return_exceptions=True,
    )
    assert isinstance(wrong, WrongExpectedVersion)
    assert isinstance(dupe, DuplicateEventId)
    for r in (ok_a, ok_b, chained, ok_c):
        assert not isinstance(r, BaseException), r
    assert [e.version async for e in store.read_stream("run-2")] == [0, 1, 2]
    assert [e.version async for e in store.read_stream("run-4")] == [0, 1]
    assert [e async for e in store.read_stream("run-3")] == []
    got = [e.position async for e in store.read()]
    assert got == list(range(1, len(got) + 1))  # no holes from the failed appends
    assert (await store.verify()).ok


# ---- queries ---------------------------------------------------------------------------------


def test_prefix_upper_bounds_exactly_the_prefix() -> None:
    assert prefix_upper("tool.") == "tool/"
    assert prefix_upper("task_") == "task`"
    assert prefix_upper("a\U0010ffff") == "b"
    assert prefix_upper("\U0010ffff") is None
    assert prefix_upper("x\ud7ff") == "x\ue000"
    for s in ("task_x", "task_", "task_\U0010ffff"):
        assert "task_" <= s < "task`"
    for s in ("taskX", "task", "task`"):
        assert not ("task_" <= s < "task`")


async def test_many_types_under_a_prefix_fall_back_and_still_agree(store: SQLiteStore) -> None:
    types = [f"t.k{i:02d}" for i in range(MAX_ARMS + 5)] + ["t", "tx.a", "u.k"]
    for i, t in enumerate(types):
        await store.append(f"s-{i % 3}", [ev(t, actor="agent:a" if i % 2 else "orchestrator")])
    everything = [e async for e in store.read()]
    for q in (Query(types=("t.*",)), Query(types=("t.*", "u.k")), Query(types=("t.k03", "t.*")),
              Query(types=("t.*",), actors=("agent:a",)), Query(types=("nothing.*",))):
        want = [e.id for e in everything if q.matches(e)]
        assert [e.id async for e in store.read(q)] == want, q
        page = await store.read_page(q, limit=7)
        assert [e.id for e in page.events] == want[:7], q


async def test_like_metacharacters_are_literal(store: SQLiteStore) -> None:
    for s in ("a_b", "axb", "aXb-1", "A_b", "a.b"):
        await store.append(s, [ev()])
    for prefix, want in (("a_", ["a_b"]), ("a%", []), ("a", ["a_b", "axb", "aXb-1", "a.b"]),
                         ("A", ["A_b"]), ("", ["a_b", "axb", "aXb-1", "A_b", "a.b"])):
        got = [e.stream async for e in store.read(Query(stream_prefix=prefix))]
        assert got == want, prefix


async def test_concurrent_prefix_queries_share_the_reader_safely(store: SQLiteStore) -> None:
    for i in range(30):
        await store.append(f"s-{i % 3}", [ev(f"t.k{i % 4}"), ev("u.x")])
    want = [e.id async for e in store.read() if e.type.startswith("t.")]
    pages = await asyncio.gather(*(store.read_page(Query(types=("t.*",)), limit=1000)
                                   for _ in range(12)),
                                 *(store.read_page(Query(actors=("orchestrator",)))
                                   for _ in range(4)))
    for page in pages[:12]:
        assert [e.id for e in page.events] == want


UNCLOSED = textwrap.dedent("""
    import asyncio, sys
    from eventstore.config import Config
    from eventstore.model import NewEvent
    from eventstore.urls import open_store

    KEEP = []

    async def main():
        store = await open_store(sys.argv[1], config=Config())
        KEEP.append(store)  # still referenced at exit, never closed
        await store.append("run-1", [NewEvent(type="test.happened")])
        print("appended", flush=True)

    asyncio.run(main())
""")


def test_a_store_left_open_does_not_keep_the_process_alive(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    done = subprocess.run([sys.executable, "-c", UNCLOSED, f"sqlite:///{path}"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "appended", done.stderr
    c = raw(path)
    try:
        assert c.execute("SELECT stream FROM events").fetchall() == [("run-1",)]
    finally:
        c.close()


async def test_careful_path_isolates_each_append_in_a_savepoint(store: SQLiteStore) -> None:
    """The fallback the writer takes if a group insert ever hits a constraint."""
    from eventstore.backends.sqlite_writer import AppendJob

    dup = ev()
    await store.append("run-0", [dup])
    loop = asyncio.get_running_loop()
    jobs = [AppendJob("run-1", [ev()], NO_STREAM, loop.create_future()),
            AppendJob("run-2", [ev(), dup], NO_STREAM, loop.create_future()),
            AppendJob("run-1", [ev()], 0, loop.create_future())]
    writer = store._writer

    def careful(conn: sqlite3.Connection) -> list[object]:
        conn.execute("BEGIN IMMEDIATE")
        out = writer._one_by_one(conn, jobs)
        conn.execute("COMMIT")
        return list(out)

    ok, dupe, chained = await writer.run(careful)
    assert isinstance(dupe, DuplicateEventId)
    assert not isinstance(ok, BaseException) and not isinstance(chained, BaseException)
    assert [(e.stream, e.version, e.position) async for e in store.read()] == [
        ("run-0", 0, 1), ("run-1", 0, 2), ("run-1", 1, 3)]


def test_build_values_are_the_rows_build_rows_makes() -> None:
    """The SQLite fast path inserts ``build_values`` tuples; they must be exactly the rows
    (texts, versions, chain hashes) that ``build_rows`` makes for every other backend."""
    from datetime import UTC, datetime

    from eventstore.append import VALUE_FIELDS, EncodedBatch, Head, build_rows, build_values
    from eventstore.backends.sqlite_schema import INSERT_SQL
    from eventstore.backends.sqlite_writer import row_params
    from eventstore.canonical import canonical_json

    columns = INSERT_SQL[INSERT_SQL.index("(") + 1: INSERT_SQL.index(")")]
    assert tuple(c.strip() for c in columns.split(",")) == VALUE_FIELDS
    events = [ev("tool.completed", data={"n": i, "x": "é" * i}, correlation_id=f"r{i % 2}",
                 causation_id=None if i % 3 else "c", metadata={"m": i} if i % 2 else {})
              for i in range(7)]
    now = datetime.now(UTC)
    for head in (None, Head(4, "ab" * 32)):
        rows = build_rows("s-1", events, head, now)
        want = [row_params(r, 10 + i) for i, r in enumerate(rows)]
        assert build_values("s-1", events, head, now, 10) == want
        encoded = EncodedBatch(events, [(canonical_json(e.data), canonical_json(e.metadata))
                                        for e in events])
        assert build_values("s-1", encoded, head, now, 10) == want


@pytest.mark.parametrize(("column", "value"), [
    ("data", "not json"), ("data", b"\x00\x01"), ("metadata", '{"a": 1} trailing'),
    ("occurred_at", "yesterday"), ("recorded_at", "2026-13-45T00:00:00Z"),
])
async def test_an_unreadable_row_is_store_corrupted_naming_its_position(
        tmp_path: Path, column: str, value: object) -> None:
    """The page decoder reads rows in one loop; a bad row still gets a message naming it."""
    path = tmp_path / "events.db"
    s = await open_path(path)
    try:
        await s.append("s-1", [ev(data={"i": i}) for i in range(5)])
        conn = raw(path)
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute(f"UPDATE events SET {column} = ? WHERE position = 3", (value,))
        conn.close()
        with pytest.raises(StoreCorrupted, match=r"events\.db: the event at position 3 "):
            [e async for e in s.read()]
        with pytest.raises(StoreCorrupted, match="position 3"):
            [e async for e in s.read_stream("s-1")]
        assert len((await s.read_page(Query(), limit=2)).events) == 2  # rows before it read
    finally:
        await s.close()


def test_build_values_hashes_are_chain_hash() -> None:
    """``build_values`` writes the hashed document out by hand (names encoded once per
    batch, its own timestamps and hashes quoted as they are): every hash must be
    ``chain_hash`` over ``canonical_json`` of the whole document, whatever the names hold."""
    import random
    from datetime import UTC, datetime, timedelta

    from eventstore.append import Head, build_values
    from eventstore.canonical import chain_hash, hash_body
    from eventstore.model import NewEvent

    rng = random.Random(3)
    names = ["a", "agent:x\"y", "user:é", "agent:\\", "agent:日本", "agent:a\x7fb", "orchestrator"]
    texts = [None, "", "r-1", "q\"uote", "back\\slash", "tab\tnew\nline", "\x01ctl", "é😀",
             "null", "r-1"]
    for head in (None, Head(6, "ab" * 32), Head(2, "we\"ird\\head")):
        events = [
            NewEvent(type=rng.choice(["tool.completed", "run.step", "x.y-z_1"]),
                     actor=rng.choice(names), correlation_id=rng.choice(texts),
                     causation_id=rng.choice(texts), id=rng.choice(["", "i\"d", "é"]) + str(i),
                     occurred_at=datetime(2025, 1, 1, tzinfo=UTC) + timedelta(microseconds=i),
                     data={"n": i, "s": rng.choice(texts)},
                     metadata={"m": rng.choice(texts)} if i % 2 else {})
            for i in range(40)
        ]
        prev = None if head is None else head.hash
        for e, v in zip(events, build_values("s\"1/é", events, head, datetime.now(UTC), 1),
                        strict=True):
            body = hash_body(id=e.id, stream="s\"1/é", version=v[3], type=e.type, data=e.data,
                             metadata=e.metadata, actor=e.actor,
                             correlation_id=e.correlation_id, causation_id=e.causation_id,
                             occurred_at=v[8])
            assert v[12] == prev
            assert v[13] == chain_hash(body, prev), e
            prev = v[13]
