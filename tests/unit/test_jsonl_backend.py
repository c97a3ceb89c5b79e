"""What only the JSONL backend has: segment files, the sidecar index, tail repair.

Crashes are reproduced with real bytes: a store directory is copied, the original takes
one more append, and a prefix of the bytes that append wrote is glued onto the copy, which
is exactly what a writer killed in the middle of its ``write()`` leaves behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from eventstore.backends.jsonl import JsonlStore
from eventstore.config import Config
from eventstore.errors import ConfigError, StoreCorrupted, StoreUnavailable
from eventstore.model import NO_STREAM, NewEvent, Query
from eventstore.retention import RetentionPolicy
from eventstore.urls import open_store

ROOT = Path(__file__).resolve().parents[2]


def events(n: int, **kw: object) -> list[NewEvent]:
    return [NewEvent(type="test.happened", data={"i": i}, **kw) for i in range(n)]  # type: ignore[arg-type]


async def opened(path: Path, **kw: object) -> JsonlStore:
    kw.setdefault("fsync", "never")
    return await JsonlStore.open(path, **kw)  # type: ignore[arg-type]


def seg(path: Path, n: int = 1) -> Path:
    return path / "segments" / f"{n:08d}.jsonl"


async def all_of(store: JsonlStore) -> list[tuple[str, int, int]]:
    return [(e.stream, e.version, e.position) async for e in store.read()]


@pytest.fixture
async def three(tmp_path: Path) -> AsyncIterator[tuple[Path, Path, bytes]]:
    """A store with stream a (3 events), a copy of it, and the bytes one more
    3-event append to stream b wrote in the original: (copy, original, appended)."""
    orig, copy = tmp_path / "orig", tmp_path / "copy"
    s = await opened(orig)
    await s.append("a", events(3))
    await s.close()
    shutil.copytree(orig, copy)
    s = await opened(orig)
    await s.append("b", events(3))
    await s.close()
    appended = seg(orig).read_bytes()[seg(copy).stat().st_size:]
    assert appended.count(b"\n") == 3
    yield copy, orig, appended


def glue(path: Path, data: bytes) -> int:
    """Append raw bytes to the first segment; returns its size before."""
    before = seg(path).stat().st_size
    with open(seg(path), "ab") as fh:
        fh.write(data)
    return before


# ---- the file format --------------------------------------------------------------------


async def test_one_event_per_line_as_to_json_dict(tmp_path: Path) -> None:
    s = await opened(tmp_path / "s")
    await s.append("run-1", events(2, correlation_id="r1"))
    await s.append("run-2", [NewEvent(type="tool.done", data={"text": "ü\nline\u2028x"})])
    stored = [e async for e in s.read()]
    await s.close()
    lines = seg(tmp_path / "s").read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 4
    docs = [json.loads(line) for line in lines[:-1]]
    assert [d.pop("batch") for d in docs] == [[1, 2], [2, 2], [1, 1]]
    assert docs == [e.to_json_dict() for e in stored]
    assert list(docs[0]) == list(stored[0].to_json_dict())
    assert b'"correlation_id":"r1"' in lines[0]  # greppable


async def test_layout_marker_and_gitignore(tmp_path: Path) -> None:
    s = await opened(tmp_path / "s")
    await s.close()
    root = tmp_path / "s"
    assert json.loads((root / "store.json").read_text())["format"] == "orchestrail-jsonl"
    ignored = (root / ".gitignore").read_text().split()
    assert "index.db*" in ignored and "lock" in ignored


# ---- crash repair ----------------------------------------------------------------------


async def test_torn_last_line_is_cut_and_committed_events_kept(
    three: tuple[Path, Path, bytes],
) -> None:
    copy, _, appended = three
    first_line = appended.split(b"\n")[0]
    before = glue(copy, first_line[: len(first_line) // 2])
    with capture_logs() as logs:
        s = await opened(copy)
    try:
        assert await all_of(s) == [("a", 0, 1), ("a", 1, 2), ("a", 2, 3)]
        assert seg(copy).stat().st_size == before
        warning = next(x for x in logs if x["event"] == "jsonl.tail_repaired")
        assert warning["log_level"] == "warning"
        assert warning["file"] == str(seg(copy)) and warning["offset"] == before
        r = await s.append("a", events(1), expected_version=2)
        assert (r.first_version, r.first_position) == (3, 4)
        assert (await s.verify()).ok
    finally:
        await s.close()


async def test_incomplete_trailing_batch_is_dropped(three: tuple[Path, Path, bytes]) -> None:
    copy, _, appended = three
    two_lines = b"".join(line + b"\n" for line in appended.split(b"\n")[:2])
    before = glue(copy, two_lines)
    with capture_logs() as logs:
        s = await opened(copy)
    try:
        assert [e[0] for e in await all_of(s)] == ["a", "a", "a"]
        assert await s.stream_version("b") is None
        assert seg(copy).stat().st_size == before
        assert any(x["event"] == "jsonl.tail_repaired" and x["offset"] == before for x in logs)
    finally:
        await s.close()


async def test_whole_unindexed_batch_is_committed_and_indexed(
    three: tuple[Path, Path, bytes],
) -> None:
    """A writer that died after its write() but before updating the index did commit."""
    copy, _, appended = three
    glue(copy, appended)
    s = await opened(copy)
    try:
        assert await all_of(s) == [("a", 0, 1), ("a", 1, 2), ("a", 2, 3),
                                   ("b", 0, 4), ("b", 1, 5), ("b", 2, 6)]
        assert await s.head_position() == 6
    finally:
        await s.close()


async def test_readers_ignore_a_tail_being_written(three: tuple[Path, Path, bytes]) -> None:
    copy, _, appended = three
    s = await opened(copy)
    try:
        glue(copy, appended[:-10])  # a writer in the middle of its write()
        assert len(await all_of(s)) == 3 and await s.head_position() == 3
        with capture_logs() as logs:
            r = await s.append("c", events(1))  # under the lock: repaired first
        assert r.first_position == 4
        assert any(x["event"] == "jsonl.tail_repaired" for x in logs)
        assert [e[0] for e in await all_of(s)] == ["a", "a", "a", "c"]
    finally:
        await s.close()


async def test_corrupt_line_in_the_middle_names_file_and_line(tmp_path: Path) -> None:
    root = tmp_path / "s"
    s = await opened(root)
    await s.append("a", events(2))
    await s.append("b", events(2))
    await s.close()
    lines = seg(root).read_bytes().split(b"\n")
    lines[1] = b'{"id": "broken'
    seg(root).write_bytes(b"\n".join(lines))
    with pytest.raises(StoreCorrupted, match=r"00000001\.jsonl:2: not valid JSON"):
        await opened(root)


async def test_damaged_committed_last_line_is_not_dropped(tmp_path: Path) -> None:
    """A complete line the index knew as committed is never taken for a torn tail."""
    root = tmp_path / "s"
    s = await opened(root)
    await s.append("a", events(2))
    await s.close()
    data = seg(root).read_bytes()
    seg(root).write_bytes(data[:-30] + b"#" * 29 + b"\n")
    with pytest.raises(StoreCorrupted, match=r"00000001\.jsonl:2"):
        await opened(root)
    assert seg(root).stat().st_size == len(data)  # nothing cut


async def test_lost_end_of_log_is_reported_by_verify(tmp_path: Path) -> None:
    """The index remembers the head, so a truncated segment shows up as truncation."""
    root = tmp_path / "s"
    s = await opened(root)
    await s.append("a", events(2))
    size = seg(root).stat().st_size
    await s.append("b", events(2))
    await s.close()
    os.truncate(seg(root), size)
    s = await opened(root)
    try:
        assert [e[0] for e in await all_of(s)] == ["a", "a"]
        assert await s.head_position() == 4
        report = await s.verify()
        assert not report.ok and report.first_problem is not None
        assert report.first_problem.kind == "truncated"
        r = await s.append("c", events(1))
        assert r.first_position == 5  # positions are never reused
    finally:
        await s.close()


# ---- the index ---------------------------------------------------------------------------


async def test_index_rebuilt_when_deleted(tmp_path: Path) -> None:
    root = tmp_path / "s"
    s = await opened(root, segment_bytes=900)
    for i in range(6):
        await s.append(f"run-{i % 2}", events(2, correlation_id=f"c{i % 3}"))
    before = await all_of(s)
    await s.close()
    for name in os.listdir(root):
        if name.startswith("index.db"):
            os.unlink(root / name)
    with capture_logs():
        s = await opened(root)
    try:
        assert await all_of(s) == before
        page = await s.read_page(Query(correlation_id="c1"))
        assert [e.position for e in page.events] == [3, 4, 9, 10]
        assert await s.stream_version("run-1") == 5
        assert (await s.verify()).ok
    finally:
        await s.close()


async def test_corrupt_index_file_is_replaced(tmp_path: Path) -> None:
    root = tmp_path / "s"
    s = await opened(root)
    await s.append("a", events(3))
    await s.close()
    for name in os.listdir(root):
        if name.startswith("index.db"):
            os.unlink(root / name)
    (root / "index.db").write_bytes(b"this is not a database" * 100)
    with capture_logs() as logs:
        s = await opened(root)
    try:
        assert len(await all_of(s)) == 3
        assert any(x["event"] == "jsonl.index_rebuild" for x in logs)
    finally:
        await s.close()


async def test_index_caught_up_after_another_process_appends(tmp_path: Path) -> None:
    root = tmp_path / "s"
    s = await opened(root)
    try:
        await s.append("mine", events(2))
        script = (
            "import asyncio, sys\n"
            "from eventstore.backends.jsonl import JsonlStore\n"
            "from eventstore.model import NewEvent\n"
            "async def main():\n"
            "    s = await JsonlStore.open(sys.argv[1], fsync='always')\n"
            "    await s.append('theirs', [NewEvent(type='x.y') for _ in range(3)])\n"
            "    await s.close()\n"
            "asyncio.run(main())\n"
        )
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, str(root),
                                                    cwd=ROOT)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        assert await all_of(s) == [("mine", 0, 1), ("mine", 1, 2), ("theirs", 0, 3),
                                   ("theirs", 1, 4), ("theirs", 2, 5)]
        r = await s.append("mine", events(1), expected_version=1)
        assert r.first_position == 6
    finally:
        await s.close()


async def test_segment_edited_behind_the_index_is_rescanned(tmp_path: Path) -> None:
    root = tmp_path / "s"
    s = await opened(root, segment_bytes=700)
    for i in range(4):
        await s.append(f"run-{i}", events(2))
    await s.close()
    assert len(list((root / "segments").iterdir())) >= 2
    # rewrite the first segment without run-0, as a retention rewrite would
    first = seg(root)
    kept = [ln for ln in first.read_text().splitlines(keepends=True) if '"run-0"' not in ln]
    first.write_text("".join(kept))
    s = await opened(root)
    try:
        assert await s.stream_version("run-0") is None
        assert [e[0] for e in await all_of(s)] == ["run-1", "run-1", "run-2", "run-2",
                                                    "run-3", "run-3"]
    finally:
        await s.close()


async def test_open_reader_notices_lines_that_moved(tmp_path: Path) -> None:
    """A segment rewritten behind an open store (as another process's retention does):
    the read finds a line that is not the one the index expects, reconciles, reads again."""
    root = tmp_path / "s"
    s = await opened(root)
    try:
        await s.append("a", events(2))
        await s.append("b", events(2))
        lines = seg(root).read_bytes().splitlines(keepends=True)
        seg(root).write_bytes(b"".join(lines[1:]))
        assert await all_of(s) == [("a", 1, 2), ("b", 0, 3), ("b", 1, 4)]
        r = await s.append("b", events(1), expected_version=1)
        assert r.first_position == 5
    finally:
        await s.close()


# ---- segments, fsync, retention ------------------------------------------------------------


async def test_segments_roll_and_batches_never_span_two(tmp_path: Path) -> None:
    root = tmp_path / "s"
    s = await opened(root, segment_bytes=2_000)
    for i in range(12):
        await s.append(f"run-{i % 3}", events(1 + i % 4))
    want = await all_of(s)
    await s.close()
    files = sorted((root / "segments").glob("*.jsonl"))
    assert len(files) > 3
    for f in files:
        docs = [json.loads(x) for x in f.read_text().splitlines()]
        assert docs[0]["batch"][0] == 1 and docs[-1]["batch"][0] == docs[-1]["batch"][1]
        assert f.stat().st_size <= 2_000 or docs[0]["batch"][1] == len(docs)
    s = await opened(root)
    try:
        assert await all_of(s) == want
        assert (await s.verify()).ok
    finally:
        await s.close()


@pytest.mark.parametrize("policy", ["always", "batch", "never"])
async def test_fsync_policies_accepted(tmp_path: Path, policy: str) -> None:
    url = f"file:///{tmp_path}/s?fsync={policy}"
    s = await open_store(url, config=Config())
    try:
        assert isinstance(s, JsonlStore) and s.fsync == policy
        for _ in range(3):
            await s.append("run-1", events(2))
    finally:
        await s.close()
    s = await open_store(url, config=Config())
    try:
        assert await s.stream_version("run-1") == 5
    finally:
        await s.close()


async def test_fsync_policy_from_config(tmp_path: Path) -> None:
    cfg = Config.model_validate({"store": {"fsync": "batch"}})
    s = await open_store(f"file:///{tmp_path}/s", config=cfg)
    try:
        assert isinstance(s, JsonlStore) and s.fsync == "batch"
    finally:
        await s.close()


async def test_unknown_fsync_policy_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fsync='sometimes'"):
        await open_store(f"file:///{tmp_path}/s?fsync=sometimes", config=Config())
    assert not (tmp_path / "s").exists()


async def test_retention_rewrites_segments_and_leaves_no_temp_files(tmp_path: Path) -> None:
    root = tmp_path / "s"
    s = await opened(root, segment_bytes=1_500)
    for i in range(6):
        await s.append(f"run-{i}", events(3))
    report = await s.apply_retention(RetentionPolicy(max_streams=2), dry_run=False)
    assert [r.stream for r in report.removed] == ["run-0", "run-1", "run-2", "run-3"]
    assert [e[0] for e in await all_of(s)] == ["run-4"] * 3 + ["run-5"] * 3 + ["$retention"]
    assert (await s.verify()).ok
    await s.close()
    assert not [p for p in (root / "segments").iterdir() if p.name.startswith(".")]
    text = "".join(p.read_text() for p in sorted((root / "segments").glob("*.jsonl")))
    assert '"stream":"run-0","version"' not in text  # only the record names it
    (root / "segments" / ".00000001.jsonl.tmp").write_text("half a rewrite")
    s = await opened(root)
    try:
        assert (await s.verify()).ok
        assert not (root / "segments" / ".00000001.jsonl.tmp").exists()
    finally:
        await s.close()


async def test_two_store_objects_share_one_directory(tmp_path: Path) -> None:
    """Two opens in one process hold separate lock descriptors, so flock still serializes."""
    root = tmp_path / "s"
    a, b = await opened(root), await opened(root)
    try:
        await a.append("x", events(1), expected_version=NO_STREAM)
        await b.append("x", events(1), expected_version=0)
        await a.append("x", events(1), expected_version=1)
        assert [e[2] for e in await all_of(b)] == [1, 2, 3]
    finally:
        await a.close()
        await b.close()


# ---- bad paths ---------------------------------------------------------------------------


async def test_path_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "events"
    f.write_text("hello")
    with pytest.raises(ConfigError, match=rf"^{f}: is a file, not a directory"):
        await opened(f)


async def test_foreign_directory_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=rf"^{tmp_path}: not an orchestrail JSONL store"):
        await opened(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


async def test_missing_directory_without_create(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match=rf"^{tmp_path}/nope: no JSONL event store"):
        await opened(tmp_path / "nope", create=False)
    assert not (tmp_path / "nope").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreUnavailable, match="no JSONL event store here"):
        await opened(tmp_path / "empty", create=False)


async def test_directory_that_cannot_be_created() -> None:
    with pytest.raises(StoreUnavailable, match=r"^/proc/orchestrail-test: cannot create"):
        await opened(Path("/proc/orchestrail-test"))


async def test_closed_store_refuses_appends(tmp_path: Path) -> None:
    s = await opened(tmp_path / "s")
    await s.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        await s.append("a", events(1))
