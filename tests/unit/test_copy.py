"""store copy keeps ids, streams, versions, order and hashes, and resumes without duplicates."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventstore import NewEvent, RetentionPolicy, open_store
from eventstore.base import EventStore
from eventstore.copy import copy_store
from eventstore.errors import StoreError


async def filled(n: int) -> EventStore:
    src = await open_store("memory://")
    for i in range(n):
        await src.append(f"session-{i % 7}", [NewEvent(
            type="tool.completed", actor="agent:x", correlation_id=f"r{i % 3}",
            data={"i": i, "f": 1.5e-7, "big": 10**20, "u": "é✓"}, metadata={"m": i})])
    return src


async def all_events(store: EventStore) -> list[dict[str, object]]:
    out = []
    async for ev in store.read():
        d = ev.to_json_dict()
        d.pop("position")
        d.pop("recorded_at")
        out.append(d)
    return out


async def test_copy_preserves_everything_but_positions(tmp_path: Path) -> None:
    src = await filled(120)
    await src.apply_retention(RetentionPolicy(max_streams=5), dry_run=False)
    dst = await open_store("memory://")
    report = await copy_store(src, dst, state_path=tmp_path / "s.json", batch_size=17)
    assert report.verified and report.copied == len(await all_events(src))
    assert await all_events(dst) == await all_events(src)
    assert not (tmp_path / "s.json").exists()


async def test_interrupted_copy_resumes_without_duplicates(tmp_path: Path) -> None:
    src = await filled(200)
    dst = await open_store("memory://")
    state = tmp_path / "s.json"

    def stop_midway(done: int, total: int) -> None:
        if done >= 90:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await copy_store(src, dst, state_path=state, batch_size=30, progress=stop_midway)
    assert state.exists() and await dst.head_position() == 90
    # the state file lags one batch behind: the resumed copy re-appends it idempotently
    state.write_text('{"after": 60}')
    report = await copy_store(src, dst, state_path=state, batch_size=30)
    assert report.resumed_from == 60 and report.verified
    assert await dst.head_position() == 200
    assert await all_events(dst) == await all_events(src)


async def test_copy_into_a_store_with_other_events_refuses(tmp_path: Path) -> None:
    src = await filled(10)
    dst = await open_store("memory://")
    await dst.append("session-0", [NewEvent(type="x.y")])
    with pytest.raises(StoreError, match="target already holds other events"):
        await copy_store(src, dst, state_path=tmp_path / "s.json")
