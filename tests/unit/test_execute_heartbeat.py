"""The heartbeat of an attempt (``orchestrator.execute.supervise``): a lease renewal in
flight when the session ends is waited for, never cut off halfway. A cut-off store append
may still commit after the caller has read the task's version, and the caller's own
completion would then lose on the version check (seen with 3 workers on PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from eventstore.urls import open_store
from orchestrator.backlog import Backlog, TaskSpec
from orchestrator.execute import supervise


def no_stop(status: str, reason: str) -> None:
    raise AssertionError(f"the session was stopped: {status} {reason}")


async def test_a_renewal_in_flight_lands_before_the_attempt_returns(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/events.db")
    b = await Backlog.load(store)
    await b.add([TaskSpec(id="a", title="A")])
    await b.claim("a", "w1")
    started = asyncio.Event()

    async def heartbeat() -> None:  # a slow store: the renewal takes 0.3 s to commit
        started.set()
        await asyncio.sleep(0.3)
        await b.renew("a", "w1", lease=timedelta(seconds=30))

    async def session() -> str:  # ends while the first renewal is in flight
        await started.wait()
        return "done"

    result, stopped = await supervise(session(), no_stop, None, None, heartbeat, 0.05)
    assert (result, stopped) == ("done", None)
    await b.refresh()
    assert b.get("a").version == 2  # the renewal landed before we returned
    await b.complete("a", {"ok": True}, worker="w1")  # so the settle sees it: no conflict
    assert b.get("a").status == "completed"
    await store.close()


async def test_a_failing_renewal_still_stops_the_session() -> None:
    async def heartbeat() -> None:
        raise RuntimeError("claimed by 'w2'")

    async def session() -> str:
        await asyncio.sleep(30)
        return "never"

    seen: list[tuple[str, str]] = []
    result, stopped = await asyncio.wait_for(supervise(
        session(), lambda s, r: seen.append((s, r)), None, None, heartbeat, 0.05), 5)
    assert result is None and stopped == ("lease_lost", "lease lost: claimed by 'w2'")
    assert seen == [stopped]
