"""`orchestrail store copy` from SQLite to PostgreSQL, as a user moving to production runs it."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore import NewEvent, RetentionPolicy, open_store
from eventstore.base import EventStore
from eventstore.copy import copy_store
from tests.conftest import ORCHESTRAIL
from tests.pg_support import fresh_database, new_schema, with_schema


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    with fresh_database() as url:
        yield url


async def fill(store: EventStore, n: int) -> None:
    for i in range(0, n, 10):
        run = f"r{i % 13}"
        await store.append(f"session-{i % 37}", [NewEvent(
            type="tool.completed", actor="agent:backend-implementer", correlation_id=run,
            data={"i": i + k, "x": 1e300, "neg": -0.0, "u": "é✓\u2028", "n": [1.5, None]},
            metadata={"k": k}) for k in range(10)])


async def snapshot(store: EventStore) -> list[tuple[object, ...]]:
    return [(e.id, e.stream, e.version, e.type, e.data, e.metadata, e.hash, e.prev_hash)
            async for e in store.read()]


async def test_sqlite_to_postgres_preserves_everything(tmp_path: Path, pg_database: str) -> None:
    src = await open_store(f"sqlite:///{tmp_path}/events.db")
    await fill(src, 3_000)
    await src.apply_retention(RetentionPolicy(max_streams=30), dry_run=False)
    dst = await open_store(with_schema(pg_database, new_schema()))
    try:
        report = await copy_store(src, dst, state_path=tmp_path / "state.json", batch_size=500)
        assert report.verified, report
        assert await snapshot(dst) == await snapshot(src)
        assert [(s.stream, s.count, s.last_hash) for s in await dst.streams()] == \
            [(s.stream, s.count, s.last_hash) for s in await src.streams()]
    finally:
        await src.close()
        await dst.close()


async def test_interrupted_copy_resumes_without_duplicates(tmp_path: Path,
                                                            pg_database: str) -> None:
    src = await open_store(f"sqlite:///{tmp_path}/events.db")
    await fill(src, 2_000)
    dst_url = with_schema(pg_database, new_schema())
    dst = await open_store(dst_url)
    state = tmp_path / "state.json"

    def crash(done: int, total: int) -> None:
        if done >= 1_000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await copy_store(src, dst, state_path=state, batch_size=250, progress=crash)
    assert await dst.head_position() == 1_000
    state.write_text(json.dumps({"after": 750}))  # the state lagged one batch behind
    report = await copy_store(src, dst, state_path=state, batch_size=250)
    assert report.verified and report.resumed_from == 750
    assert await dst.head_position() == 2_000
    assert await snapshot(dst) == await snapshot(src)
    await src.close()
    await dst.close()


def test_cli_copy_then_verify_target(tmp_path: Path, pg_database: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRAIL_")}
    sample = Path(__file__).resolve().parents[2] / "examples" / "events" / "sample-run.jsonl"
    ok = subprocess.run([ORCHESTRAIL, "events", "append", "--file", str(sample)], cwd=tmp_path,
                        env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    dst = with_schema(pg_database, new_schema())
    out = subprocess.run([ORCHESTRAIL, "store", "copy", "sqlite:///.orchestrail/events.db", dst],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "copied 15 events in 3 streams" in out.stdout and "verified" in out.stdout
    check = subprocess.run([ORCHESTRAIL, "--store", dst, "verify"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and check.stdout.startswith("ok: 15 events")
    bad = subprocess.run([ORCHESTRAIL, "store", "copy", "sqlite:///missing.db", dst],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "does not exist" in bad.stderr


def test_cli_store_migrate(pg_database: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRAIL_")}
    url = with_schema(pg_database, new_schema())

    def migrate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ORCHESTRAIL, *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)

    first = migrate("store", "migrate", url)
    assert first.returncode == 0 and "applied 0001_events" in first.stdout
    again = migrate("store", "migrate", url, "--json")
    assert again.returncode == 0 and json.loads(again.stdout) == {"applied": []}
    wrong = migrate("--store", "sqlite:///x.db", "store", "migrate")
    assert wrong.returncode == 1 and "applies to PostgreSQL stores" in wrong.stderr
