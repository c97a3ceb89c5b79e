"""``python -m bench.postgres [--quick]``: our PostgreSQL store against eventsourcing's.

One run, contenders taking turns per round (fair under load swings), medians and ratios:
  (a) batched appends, 100 events of ~1 KB per append: ours vs eventsourcing's
      ``PostgresApplicationRecorder`` behind its ``Mapper`` (the path its users pay for);
  (b) single-event appends, 1 writer, and 8 concurrent writers (ours: asyncio tasks on the
      pool; eventsourcing: 8 threads, pool_size 8);
  (c) first page (100 events) of a correlation-id, a type and an actor query over the
      stored events (p50) — the store built once from the cached 1M-event SQLite database
      of ``bench.store`` with ``store copy`` when present, else 20,000 generated events.
Prints PASS/FAIL for issue 3's bar: batched appends at least as fast as eventsourcing's.
Needs the server at ORCHESTRAIL_TEST_PG_URL (default postgresql://root@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

from bench.peers import _event_class, run_threads
from bench.workload import batches
from eventstore.config import Config
from eventstore.copy import copy_store
from eventstore.model import Query
from eventstore.urls import open_store

PG_URL = os.environ.get("ORCHESTRAIL_TEST_PG_URL", "postgresql://root@127.0.0.1:5432/test")
DATA = Path(__file__).resolve().parent / ".data"


def admin(sql: str) -> None:
    parts = urlsplit(PG_URL)
    with psycopg.connect(f"{parts.scheme}://{parts.netloc}/postgres", autocommit=True) as c:
        c.execute(sql)


def db_url(name: str) -> str:
    parts = urlsplit(PG_URL)
    return f"{parts.scheme}://{parts.netloc}/{name}"


class EventsourcingPG:
    def __init__(self, dbname: str, pool_size: int = 1) -> None:
        from eventsourcing.persistence import (
            DatetimeAsISO,
            DecimalAsStr,
            JSONTranscoder,
            Mapper,
            UUIDAsHex,
        )
        from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

        parts = urlsplit(PG_URL)
        transcoder = JSONTranscoder()
        for t in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
            transcoder.register(t)
        self.mapper: Any = Mapper(transcoder=transcoder)
        self.datastore = PostgresDatastore(
            dbname=dbname, host=parts.hostname or "127.0.0.1", port=parts.port or 5432,
            user=parts.username or "root", password=parts.password or "", pool_size=pool_size)
        self.recorder = PostgresApplicationRecorder(self.datastore,
                                                    events_table_name="es_events")
        self.recorder.create_table()
        self.cls = _event_class()

    def domain_events(self, events: list[Any]) -> list[Any]:
        originator = uuid.uuid4()
        return [self.cls(originator_id=originator, originator_version=i + 1,
                         timestamp=e.occurred_at, type=e.type, actor=e.actor,
                         correlation_id=e.correlation_id, causation_id=e.causation_id,
                         data=e.data) for i, e in enumerate(events)]

    def insert(self, domain_events: list[Any]) -> None:
        self.recorder.insert_events([self.mapper.to_stored_event(e) for e in domain_events])

    def close(self) -> None:
        self.datastore.close()


async def bench_batched(dbname: str, rounds: int) -> dict[str, float]:
    work = batches(11, rounds + 3, 100)
    ours = await open_store(db_url(dbname) + "?schema=bench_a", config=Config())
    es = EventsourcingPG(dbname)
    domain = [es.domain_events(b) for b in work]
    samples: dict[str, list[float]] = {"ours": [], "eventsourcing": []}
    try:
        for i, b in enumerate(work):
            t = time.perf_counter()
            await ours.append(f"run-{i}", b)
            samples["ours"].append(time.perf_counter() - t)
            t = time.perf_counter()
            await asyncio.to_thread(es.insert, domain[i])
            samples["eventsourcing"].append(time.perf_counter() - t)
    finally:
        await ours.close()
        es.close()
    return {k: statistics.median(v[3:]) for k, v in samples.items()}


async def bench_single(dbname: str, total: int) -> dict[str, dict[int, float]]:
    """Events per second for single-event appends, 1 and 8 writers."""
    out: dict[str, dict[int, float]] = {"ours": {}, "eventsourcing": {}}
    events = [b[0] for b in batches(12, total, 1)]
    for writers in (1, 8):
        ours = await open_store(db_url(dbname) + f"?schema=bench_s{writers}&pool_max=8",
                                config=Config())
        per = total // writers

        async def writer(w: int, store: Any = ours, per: int = per, n: int = writers) -> None:
            for k in range(per):
                await store.append(f"w{n}-{w}-{k}", [events[(w * per + k) % total]
                                   .model_copy(update={"id": str(uuid.uuid4())})])

        t = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(writers)))
        out["ours"][writers] = per * writers / (time.perf_counter() - t)
        await ours.close()
        es = EventsourcingPG(dbname, pool_size=writers)
        domain = [es.domain_events([e]) for e in events[: per * writers]]

        def es_writer(chunk: list[list[Any]], es: Any = es) -> None:
            for d in chunk:
                es.insert(d)

        chunks = [domain[w * per:(w + 1) * per] for w in range(writers)]
        t = time.perf_counter()
        await asyncio.to_thread(run_threads, writers, es_writer, chunks)
        out["eventsourcing"][writers] = per * writers / (time.perf_counter() - t)
        es.close()
    return out


async def bench_queries(dbname: str, rounds: int) -> tuple[int, dict[str, float]]:
    url = db_url(dbname) + "?schema=bench_q"
    store = await open_store(url, config=Config())
    if await store.head_position() == 0:
        cached = DATA / "events-1000000.db"
        if cached.exists():
            print(f"  building the query store from {cached} with store copy (once)...")
            src = await open_store(f"sqlite:///{cached}", config=Config(), create=False)
            await copy_store(src, store, state_path=DATA / "pg-copy-state.json")
            await src.close()
        else:
            for i, b in enumerate(batches(13, 200, 100)):
                await store.append(f"session-{i % 97}", b)
    n = await store.head_position()
    sample = [e async for e in store.read(Query(), after=max(0, n // 2))][:1]
    probe = sample[0] if sample else None
    queries = {
        "correlation": Query(correlation_id=probe.correlation_id if probe else "x"),
        "type": Query(types=(probe.type if probe else "tool.completed",)),
        "actor": Query(actors=(probe.actor if probe else "orchestrator",)),
    }
    out: dict[str, float] = {}
    for name, q in queries.items():
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            await store.read_page(q, limit=100)
            times.append(time.perf_counter() - t)
        out[name] = statistics.median(times)
    await store.close()
    return n, out


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.postgres")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    rounds = 20 if args.quick else 60
    run_db = f"orchestrail_bench_{uuid.uuid4().hex[:8]}"
    admin(f'CREATE DATABASE "{run_db}"')
    query_db = "orchestrail_bench_queries"
    try:
        admin(f'CREATE DATABASE "{query_db}"')
    except psycopg.errors.DuplicateDatabase:
        pass
    try:
        print(f"bench.postgres against {PG_URL.rsplit('@', 1)[-1]}  ({rounds} rounds)")
        a = await bench_batched(run_db, rounds)
        print(f"(a) batched 100 x ~1 KB: ours {a['ours'] * 1000:.2f} ms, eventsourcing "
              f"{a['eventsourcing'] * 1000:.2f} ms -> ours/eventsourcing speed "
              f"{a['eventsourcing'] / a['ours']:.2f}x")
        b = await bench_single(run_db, 400 if args.quick else 1600)
        for w in (1, 8):
            print(f"(b) single-event appends, {w} writer(s): ours {b['ours'][w]:,.0f}/s, "
                  f"eventsourcing {b['eventsourcing'][w]:,.0f}/s "
                  f"({b['ours'][w] / b['eventsourcing'][w]:.2f}x)")
        n, q = await bench_queries(query_db, 20 if args.quick else 50)
        print(f"(c) first page of 100 over {n:,} events, p50: " + ", ".join(
            f"{k} {v * 1000:.2f} ms" for k, v in q.items()))
        ratio = a["eventsourcing"] / a["ours"]
        ok = ratio >= 1.0
        print(f"BAR batched appends >= 1.0x eventsourcing's PostgreSQL recorder: {ratio:.2f}x "
              f"{'PASS' if ok else 'FAIL'}")
        return 0 if ok else 1
    finally:
        admin(f'DROP DATABASE IF EXISTS "{run_db}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
