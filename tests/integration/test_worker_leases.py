"""Lease loss, in one process so the test can act between a worker's steps: a real SQLite
file opened twice (the worker's connection and a second "worker" that takes over), the
script provider, a real Bash tool call."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eventstore.base import EventStore
from eventstore.model import Query
from eventstore.urls import open_store
from orchestrator.backlog import Backlog, TaskState
from orchestrator.runner import RunConfig
from orchestrator.worker import Worker, WorkerConfig
from tests.integration.test_worker_cli import setup


async def start(tmp: Path, seconds: float, wcfg: WorkerConfig
                ) -> tuple[Path, EventStore, Worker, asyncio.Task[Any], EventStore]:
    url = f"sqlite:///{tmp}/events.db"
    p = setup(tmp, 1, seconds, url)
    store = await open_store(url)
    cfg = RunConfig(project=p, script=p / "script.yaml", workspace="none")
    w = Worker(store, cfg, wcfg)
    await w.prepare()
    running = asyncio.create_task(w.run())
    other = await open_store(url)  # the second worker's own connection
    return p, store, w, running, other


async def dispatched(store: EventStore) -> None:
    for _ in range(400):
        if [e async for e in store.read(Query(types=["tool.requested"]))]:
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the worker never started its tool call")


async def take_over(other: EventStore, thief: str) -> tuple[Backlog, TaskState]:
    """Claim t000 as if the holder's lease had run out (the thief's clock says so)."""
    b = await Backlog.load(other)
    held = b.get("t000")
    assert held.status == "claimed" and held.lease_until is not None
    got = await b.claim("t000", thief, now=held.lease_until + timedelta(seconds=1))
    assert got is not None and got.worker == thief
    return b, got


async def trail(store: EventStore, type_: str) -> list[Any]:
    return [e async for e in store.read(Query(types=[type_]))]


async def test_lost_heartbeat_stops_the_session_and_nothing_is_completed(tmp_path: Path
                                                                         ) -> None:
    _, store, w, running, other = await start(
        tmp_path, 20, WorkerConfig(name="slow", lease=1.0, heartbeat=0.3, idle_exit=0))
    await dispatched(store)
    await asyncio.sleep(1.0)  # a few heartbeats renew the 1 s lease meanwhile
    t0 = time.monotonic()
    b, got = await take_over(other, "thief")
    assert got.attempts == 2
    rep = await asyncio.wait_for(running, 15)
    assert time.monotonic() - t0 < 5  # the next heartbeat noticed; the tool call was cut
    assert rep.completed == [] and "claimed by 'thief'" in rep.lost["t000"]
    failed = await trail(store, "agent.failed")
    assert [e.data["status"] for e in failed] == ["lease_lost"]
    lost = await trail(store, "worker.claim_lost")
    assert len(lost) == 1 and lost[0].data["held_by"] == "thief"
    assert lost[0].data["outcome"] == "lease_lost" and lost[0].stream == f"run-{w.run_id}"
    assert await trail(store, "task.completed") == []
    await b.refresh()
    assert b.get("t000").worker == "thief" and b.get("t000").status == "claimed"
    claims = await trail(store, "task.claimed")
    assert claims[-1].data["took_over_from"] == w.run_id
    assert [c.data["worker"] for c in claims[:-1]] == [w.run_id] * (len(claims) - 1)
    assert len(claims) >= 3  # the claim, then heartbeats renewing it until the takeover
    assert rep.status == "completed" and rep.exit_code() == 0
    await store.close()
    await other.close()


async def test_a_slow_workers_completion_loses_exactly_once(tmp_path: Path) -> None:
    """The worker's lease ran out mid-task (no heartbeat in time), another worker took the
    task over and completed it; the slow worker finishes its session afterwards: its
    completion is refused and recorded, the task stays completed once."""
    p, store, w, running, other = await start(
        tmp_path, 1.5, WorkerConfig(name="slow", lease=30, heartbeat=20, idle_exit=0))
    await dispatched(store)
    b, _ = await take_over(other, "fast")
    await b.complete("t000", {"by": "fast"}, worker="fast")
    rep = await asyncio.wait_for(running, 30)
    completed = await trail(store, "task.completed")
    assert [(e.data["worker"], e.data["result"]) for e in completed] == [("fast", {"by": "fast"})]
    assert rep.completed == [] and "already completed" in rep.lost["t000"]
    lost = await trail(store, "worker.claim_lost")
    assert [(e.data["outcome"], e.data["task_status"]) for e in lost] == [("completed",
                                                                           "completed")]
    # the slow worker's tool call did run: at-least-once execution, exactly-once completion
    assert (p / "markers" / "t000").read_text() == "x"
    finished = await trail(store, "agent.finished")
    assert len(finished) == 1 and finished[0].correlation_id == w.run_id
    assert datetime.now(UTC) > completed[0].occurred_at
    await store.close()
    await other.close()
