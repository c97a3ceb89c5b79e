"""The transcript import writes the same trail into every backend (real PostgreSQL, JSONL,
SQLite): ``append_many`` keeps each stream's batches in order everywhere, and a second
import appends nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore.model import Query
from eventstore.urls import open_store
from orchestrator.importers.claude_code import discover, import_sessions
from tests import pg_support
from tests.fakes.claude_transcripts import write_session


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with pg_support.fresh_database() as url:
        yield url


Rows = list[tuple[str, int, str, str]]


async def _import_and_read(url: str, tree: Path) -> tuple[int, int, Rows]:
    store = await open_store(url)
    try:
        sessions, _ = discover([tree])
        first = await import_sessions(store, sessions)
        second = await import_sessions(store, sessions)
        assert (await store.verify()).ok
        rows = [(e.stream, e.version, e.type, e.id) async for e in store.read(Query())]
    finally:
        await store.close()
    return first.appended, second.appended, rows


async def test_every_backend_gets_the_same_trail(tmp_path: Path, pg_url: str) -> None:
    tree = tmp_path / "projects"
    for i, layout in enumerate(("nested", "flat", "inline", "nested")):
        write_session(tree / f"p{i}", layout, i + 2, prompts=2, steps=5)
    results = {}
    for name, url in (("sqlite", f"sqlite:///{tmp_path / 'e.db'}"),
                      ("jsonl", f"file:///{tmp_path / 'jsonl'}"),
                      ("postgres", pg_url)):
        results[name] = await _import_and_read(url, tree)
    # in the test's own directory (``file://`` + an absolute path would be relative to cwd)
    assert (tmp_path / "jsonl" / "store.json").is_file()
    appended, again, rows = results["sqlite"]
    assert appended > 300 and again == 0 and len(rows) == appended
    for name in ("jsonl", "postgres"):
        other_appended, other_again, other_rows = results[name]
        assert (other_appended, other_again) == (appended, 0), name
        # same events, same streams and versions (global order may differ only between
        # streams of one wave on PostgreSQL, never within a stream)
        assert sorted(other_rows) == sorted(rows), name
