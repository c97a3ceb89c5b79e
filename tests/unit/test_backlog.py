"""The backlog: the fold, ready order, validation that writes nothing, idempotent re-adds,
and claims under optimistic concurrency (real SQLite files and the memory store)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventstore.base import EventStore
from eventstore.model import Query
from eventstore.urls import open_store
from orchestrator.backlog import (
    Backlog,
    ClaimLost,
    TaskSpec,
    TaskStateError,
    TaskValidationError,
)
from orchestrator.taskgraph import find_cycle, topological


def spec(task_id: str, *deps: str, priority: int = 2, agent: str | None = None,
         title: str | None = None) -> TaskSpec:
    return TaskSpec(id=task_id, title=title or f"do {task_id}", prompt=f"please do {task_id}",
                    depends_on=deps, priority=priority, agent=agent, origin=f"tasks.yaml:{task_id}")


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/events.db"
    s = await open_store(url)
    try:
        yield s
    finally:
        await s.close()


async def count_events(store: EventStore) -> int:
    return len([e async for e in store.read(Query(stream_prefix="task-"))])


async def test_ready_orders_by_dependencies_then_priority_then_creation(store: EventStore
                                                                          ) -> None:
    b = await Backlog.load(store)
    await b.add([spec("a"), spec("b", priority=1), spec("c", "a", priority=0), spec("d")])
    assert [t.id for t in b.ready()] == ["b", "a", "d"]  # c waits for a
    assert b.display_status(b.get("c")) == "blocked"
    await b.complete("a", result="done")
    assert [t.id for t in b.ready()] == ["c", "b", "d"]  # priority 0 first once unblocked
    fresh = await Backlog.load(store)  # the same state folded from the store alone
    assert [t.id for t in fresh.ready()] == ["c", "b", "d"]
    assert fresh.get("a").status == "completed" and fresh.get("a").result == "done"


async def test_dependencies_are_appended_first(store: EventStore) -> None:
    b = await Backlog.load(store)
    await b.add([spec("late", "early"), spec("early")])
    created = [e.stream async for e in store.read(Query(types=("task.created",)))]
    assert created == ["task-early", "task-late"]


@pytest.mark.parametrize("specs,needle", [
    ([spec("a", "c"), spec("b", "a"), spec("c", "b")], "dependency cycle a -> c -> b -> a"),
    ([spec("a", "a")], "task 'a': depends on itself"),
    ([spec("a", "ghost")], "tasks.yaml:a: task 'a': depends on unknown task 'ghost'"),
    ([spec("a"), spec("a")], "task 'a': duplicate task id"),
    ([spec("a", agent="nobody")], "unknown agent 'nobody' (known: backend-implementer"),
])
async def test_invalid_batches_write_nothing(store: EventStore, specs: list[TaskSpec],
                                             needle: str) -> None:
    b = await Backlog.load(store)
    with pytest.raises(TaskValidationError) as err:
        await b.add([spec("fine"), *specs],
                    known_agents={"backend-implementer", "reviewer"})
    assert needle in "\n".join(err.value.problems)
    assert await count_events(store) == 0


async def test_cycle_through_an_existing_task_is_caught(store: EventStore) -> None:
    b = await Backlog.load(store)
    await b.add([spec("x")])
    await b.add([spec("y", "x")])
    with pytest.raises(TaskValidationError, match="dependency cycle x -> y -> x"):
        await b.add([spec("x", "y")])  # re-import of x, now depending on y
    assert await count_events(store) == 2


async def test_agent_none_and_known_agent_are_accepted(store: EventStore) -> None:
    b = await Backlog.load(store)
    await b.add([spec("a"), spec("b", agent="reviewer")], known_agents={"reviewer"})
    assert b.get("a").agent is None and b.get("b").agent == "reviewer"


async def test_re_add_is_idempotent_and_changes_become_updates(store: EventStore) -> None:
    b = await Backlog.load(store)
    first = await b.add([spec("a"), spec("b", "a")])
    assert first.created == ["a", "b"]
    n = await count_events(store)
    again = await b.add([spec("a"), spec("b", "a")])
    assert again.unchanged == ["a", "b"] and not again.created
    assert await count_events(store) == n
    changed = await b.add([spec("a", title="do a, better"), spec("b", "a")])
    assert changed.updated == ["a"]
    assert b.get("a").title == "do a, better"
    retry = await Backlog.load(store)
    assert retry.get("a").title == "do a, better"
    await b.complete("a")
    started = await b.add([spec("a", title="third version")])
    assert not started.updated and "already completed; not updated" in started.warnings[0]
    assert b.get("a").title == "do a, better"


async def test_two_importers_racing_do_not_duplicate(store: EventStore) -> None:
    one, two = Backlog(store), Backlog(store)
    specs = [spec(f"t{i}") for i in range(10)]
    await asyncio.gather(one.add(specs), two.add(specs))
    assert await count_events(store) == 10  # deterministic ids: the loser's append is a retry


async def test_done_ids_are_completed_on_import(store: EventStore) -> None:
    b = await Backlog.load(store)
    report = await b.add([spec("a"), spec("b", "a")], done={"a"}, done_result="checked")
    assert report.completed == ["a"]
    assert b.get("a").status == "completed" and [t.id for t in b.ready()] == ["b"]
    again = await b.add([spec("a"), spec("b", "a")], done={"a"})
    assert not again.completed and await count_events(store) == 3


async def test_dry_run_writes_nothing(store: EventStore) -> None:
    b = await Backlog.load(store)
    report = await b.add([spec("a")], dry_run=True)
    assert report.created == ["a"] and await count_events(store) == 0


async def test_two_asyncio_claimers_exactly_one_wins(store: EventStore) -> None:
    await (await Backlog.load(store)).add([spec("a")])
    workers = [await Backlog.load(store) for _ in range(5)]
    got = await asyncio.gather(*(w.claim("a", f"w{i}") for i, w in enumerate(workers)))
    winners = [g for g in got if g is not None]
    assert len(winners) == 1
    claims = [e async for e in store.read_stream("task-a") if e.type == "task.claimed"]
    assert len(claims) == 1 and claims[0].data["worker"] == winners[0].worker


async def test_claim_next_spreads_tasks_across_racing_workers(store: EventStore) -> None:
    await (await Backlog.load(store)).add([spec(f"t{i:02}") for i in range(12)])
    workers = [await Backlog.load(store) for _ in range(3)]

    async def drain(i: int) -> list[str]:
        mine = []
        while (t := await workers[i].claim_next(f"w{i}")) is not None:
            mine.append(t.id)
            await workers[i].complete(t.id, worker=f"w{i}")
        return mine

    results = await asyncio.gather(*(drain(i) for i in range(3)))
    flat = sorted(x for r in results for x in r)
    assert flat == [f"t{i:02}" for i in range(12)]  # each exactly once


async def test_lease_expiry_lets_another_worker_take_over(store: EventStore) -> None:
    b = await Backlog.load(store)
    await b.add([spec("a")])
    t0 = datetime.now(UTC)
    assert await b.claim("a", "w1", lease=timedelta(seconds=30), now=t0)
    assert await b.claim("a", "w2", now=t0 + timedelta(seconds=10)) is None
    assert b.claimable(t0 + timedelta(seconds=10)) == []
    took = await b.claim("a", "w2", now=t0 + timedelta(seconds=31))
    assert took is not None and took.worker == "w2" and took.attempts == 2
    with pytest.raises(ClaimLost):
        await b.complete("a", worker="w1")
    renewed = await b.renew("a", "w2", lease=timedelta(hours=1), now=t0)
    assert renewed.lease_until == t0 + timedelta(hours=1)


async def test_takeover_is_recorded_and_only_the_holder_settles(store: EventStore) -> None:
    b = await Backlog.load(store)
    await b.add([spec("a")])
    t0 = datetime.now(UTC)
    await b.claim("a", "w1", lease=timedelta(seconds=5), now=t0)
    took = await b.claim("a", "w2", now=t0 + timedelta(seconds=6))
    assert took is not None
    last = (await b.history("a"))[-1]
    assert last.data["took_over_from"] == "w1"
    assert last.data["expired_lease_until"] == (t0 + timedelta(seconds=5)).isoformat()
    renewed = (await b.renew("a", "w2", now=t0 + timedelta(seconds=7)))
    assert "took_over_from" not in (await b.history("a"))[-1].data and renewed.worker == "w2"
    # w2 gives it back; w1 (whose lease is long gone) still cannot settle it
    await b.fail("a", "flaky", worker="w2", retry=True)
    for settle in (b.complete("a", worker="w1"), b.release("a", "w1"),
                   b.fail("a", "x", worker="w1")):
        with pytest.raises(ClaimLost, match="open again, not 'w1'"):
            await settle
    await b.claim("a", "w3")
    await b.complete("a", {"ok": True}, worker="w3")
    with pytest.raises(ClaimLost, match="already completed"):
        await b.complete("a", worker="w3")  # exactly once, even for the holder
    assert [e.type for e in await b.history("a")].count("task.completed") == 1


async def test_failure_with_retry_reopens_and_final_failure_blocks(store: EventStore) -> None:
    b = await Backlog.load(store)
    await b.add([spec("a"), spec("b", "a")])
    await b.claim("a", "w1")
    await b.fail("a", "provider timeout", worker="w1", retry=True)
    assert b.get("a").status == "open" and b.get("a").attempts == 1
    await b.claim("a", "w1")
    await b.fail("a", "gave up", worker="w1")
    assert b.get("a").status == "failed" and b.get("a").error == "gave up"
    assert b.ready() == [] and b.display_status(b.get("b")) == "blocked"
    with pytest.raises(TaskStateError, match="it is failed"):
        await b.complete("a")


async def test_claiming_a_blocked_task_is_refused(store: EventStore) -> None:
    b = await Backlog.load(store)
    await b.add([spec("a"), spec("b", "a")])
    with pytest.raises(TaskStateError, match="blocked by unfinished dependencies a"):
        await b.claim("b", "w1")
    await b.cancel("a", "not needed")
    assert b.get("a").status == "cancelled"


async def test_refresh_reads_only_new_events(store: EventStore) -> None:
    reader = await Backlog.load(store)
    writer = await Backlog.load(store)
    await writer.add([spec("a")])
    assert "a" not in reader
    await reader.refresh()
    assert reader.get("a").version == 0
    await writer.complete("a")
    await reader.refresh()
    assert reader.get("a").status == "completed" and reader.get("a").version == 1


def test_find_cycle_and_topological_order() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": []}) is None
    assert find_cycle({"a": ["b"], "b": ["a"]}) == ["a", "b", "a"]
    chain = {f"n{i}": [f"n{i + 1}"] for i in range(5000)}
    chain["n5000"] = ["n0"]
    cycle = find_cycle(chain)
    assert cycle is not None and len(cycle) == 5002  # iterative: no recursion limit
    assert topological(["c", "b", "a"], {"c": ["b"], "b": ["a"], "a": []}) == ["a", "b", "c"]
    assert topological(["x", "y"], {"x": [], "y": []}) == ["x", "y"]


def test_task_ids_are_checked() -> None:
    with pytest.raises(ValueError, match="invalid task id 'has space'"):
        TaskSpec(id="has space", title="t")
