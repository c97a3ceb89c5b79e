"""``python -m bench.store [--quick]``: our stores against eventsourcing and the raw floors.

Prints, from one run, medians and ratios for
  (a) batched appends, 100 events of ~1 KB per append;
  (b) single-event appends with 1 writer and with 8 concurrent writers (asyncio tasks;
      eventsourcing gets 8 threads, its own concurrency model);
  (c) the first page (100 events) of a correlation-id, a type and an actor query over
      1,000,000 stored events (p50), on a database built once and cached in bench/.data/.
and PASS/FAIL for each bar of issue 2. ``--quick`` (CI smoke, about a minute) uses fewer
rounds and, unless the 1M database is already cached, a 100,000-event one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.peers import EventsourcingSQLite, RawFile, RawSQLite, run_threads
from bench.workload import batches, new_event, rows_for
from eventstore.backends.sqlite_query import page_sql
from eventstore.base import EventStore
from eventstore.config import Config
from eventstore.model import Query
from eventstore.urls import open_store

DATA = Path(__file__).resolve().parent / ".data"
NA = "not available"


def jsonl_available() -> bool:
    try:
        import eventstore.backends.jsonl  # noqa: F401
    except Exception:
        return False
    return True


async def ours(url: str) -> EventStore:
    return await open_store(url, config=Config())


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return NA
    return f"{v:,.2f}{unit}" if v < 100 else f"{v:,.0f}{unit}"


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n{title}")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for r in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


# ---- (a) batched appends -----------------------------------------------------------------------


async def bench_batched(tmp: Path, rounds: int) -> dict[str, float | None]:
    """Median seconds per append of 100 x ~1 KB events, per contender."""
    out: dict[str, float | None] = {}
    work = batches(1, rounds + 3, 100)

    async def time_store(url: str) -> float:
        store = await ours(url)
        try:
            samples = []
            for i, b in enumerate(work):
                t = time.perf_counter()
                await store.append(f"run-{i}", b)
                samples.append(time.perf_counter() - t)
            return statistics.median(samples[3:])
        finally:
            await store.close()

    out["sqlite"] = await time_store(f"sqlite:///{tmp}/a-ours.db")
    out["jsonl"] = await time_store(f"file:///{tmp}/a-jsonl") if jsonl_available() else None

    es = EventsourcingSQLite(tmp / "a-es.db")
    out["es_synchronous"] = None
    domain = [es.domain_events(b) for b in work]
    samples = []
    for d in domain:
        t = time.perf_counter()
        es.insert(d)
        samples.append(time.perf_counter() - t)
    out["eventsourcing"] = statistics.median(samples[3:])
    es_sync = es.synchronous()
    es.close()

    raw = RawSQLite(tmp / "a-raw.db")
    params = [RawSQLite.params(rows_for(f"run-{i}", b)) for i, b in enumerate(work)]
    samples = []
    for p in params:
        t = time.perf_counter()
        raw.insert(p)
        samples.append(time.perf_counter() - t)
    out["raw_sqlite"] = statistics.median(samples[3:])
    raw.close()

    raw_file = RawFile(tmp / "a-raw.jsonl")
    blobs = [RawFile.lines(rows_for(f"run-{i}", b), 1 + i * 100) for i, b in enumerate(work)]
    samples = []
    for blob in blobs:
        t = time.perf_counter()
        raw_file.write(blob)
        samples.append(time.perf_counter() - t)
    out["raw_file"] = statistics.median(samples[3:])
    raw_file.close()
    print(f"  (eventsourcing connection: synchronous={es_sync}; ours and raw sqlite3: full)")
    return out


# ---- (b) single-event appends ------------------------------------------------------------------


async def bench_single(tmp: Path, total: int) -> dict[str, dict[int, float | None]]:
    """Events per second for single-event appends, 1 writer and 8 concurrent writers."""
    rng = random.Random(2)
    events = [new_event(rng, i, f"run-s-{i % 50}") for i in range(total * 2 + 16)]
    out: dict[str, dict[int, float | None]] = {}

    async def store_rate(url: str, writers: int, offset: int) -> float:
        store = await ours(url)
        try:
            await store.append("warm-up", events[offset: offset + 2])
            per = total // writers

            async def writer(w: int) -> None:
                base = offset + 2 + w * per
                for i in range(per):
                    await store.append(f"w-{writers}-{w}", [events[base + i]])

            t = time.perf_counter()
            await asyncio.gather(*(writer(w) for w in range(writers)))
            return per * writers / (time.perf_counter() - t)
        finally:
            await store.close()

    out["sqlite"] = {
        1: await store_rate(f"sqlite:///{tmp}/b-ours-1.db", 1, 0),
        8: await store_rate(f"sqlite:///{tmp}/b-ours-8.db", 8, total),
    }
    if jsonl_available():
        out["jsonl"] = {
            1: await store_rate(f"file:///{tmp}/b-jsonl-1", 1, 0),
            8: await store_rate(f"file:///{tmp}/b-jsonl-8", 8, total),
        }
    else:
        out["jsonl"] = {1: None, 8: None}

    es = EventsourcingSQLite(tmp / "b-es.db")
    singles = [es.domain_events([e]) for e in events[: total * 2]]
    es.insert(es.domain_events(events[-2:]))  # warm-up
    t = time.perf_counter()
    for d in singles[:total]:
        es.insert(d)
    es1 = total / (time.perf_counter() - t)
    per = total // 8
    chunks = [singles[total + w * per: total + (w + 1) * per] for w in range(8)]

    def es_writer(chunk: list[Any]) -> None:
        for d in chunk:
            es.insert(d)

    t = time.perf_counter()
    run_threads(8, es_writer, chunks)
    es8 = per * 8 / (time.perf_counter() - t)
    es.close()
    out["eventsourcing"] = {1: es1, 8: es8}

    raw = RawSQLite(tmp / "b-raw.db")
    params = [RawSQLite.params(rows_for(f"s-{i}", [e]))[0] for i, e in enumerate(events[:total])]
    t = time.perf_counter()
    for p in params:
        raw.insert([p])
    out["raw_sqlite"] = {1: total / (time.perf_counter() - t), 8: None}
    raw.close()

    raw_file = RawFile(tmp / "b-raw.jsonl")
    blobs = [RawFile.lines(rows_for(f"s-{i}", [e]), i + 1) for i, e in enumerate(events[:total])]
    t = time.perf_counter()
    for blob in blobs:
        raw_file.write(blob)
    out["raw_file"] = {1: total / (time.perf_counter() - t), 8: None}
    raw_file.close()
    return out


# ---- (c) first page of a query over N events ---------------------------------------------------


def build_spec(n: int) -> tuple[str, int]:
    return f"q{n}", n


async def build_store(url: str, n: int, marker: Path) -> None:
    """Append ``n`` events (~500 B each) in batches of 100; correlations interleave."""
    if marker.exists():
        return
    rng = random.Random(3)
    t = time.perf_counter()
    store = await ours(url)
    try:
        active = [f"run-{i}" for i in range(50)]
        next_run = 50
        for b in range(n // 100):
            batch = []
            for i in range(100):
                k = rng.randrange(len(active))
                batch.append(new_event(rng, b * 100 + i, active[k], 500))
                if rng.random() < 0.01:  # runs finish and new ones start: ~100 events each
                    active[k] = f"run-{next_run}"
                    next_run += 1
            await store.append(f"session-{b % 997}", batch)
            if b % 1000 == 999:
                rate = (b + 1) * 100 / (time.perf_counter() - t)
                print(f"    built {(b + 1) * 100:,} events ({rate:,.0f}/s)", file=sys.stderr)
    finally:
        await store.close()
    marker.write_text(str(n))


async def bench_queries(n: int, rounds: int) -> dict[str, dict[str, float | None]]:
    DATA.mkdir(parents=True, exist_ok=True)
    db = DATA / f"events-{n}.db"
    print(f"  query store: {db} ({n:,} events)", file=sys.stderr)
    await build_store(f"sqlite:///{db}?synchronous=normal", n, DATA / f"events-{n}.db.done")
    jdir = DATA / f"events-{n}.jsonl"
    have_jsonl = jsonl_available()
    if have_jsonl:
        await build_store(f"file:///{jdir}", n, DATA / f"events-{n}.jsonl.done")

    rng = random.Random(4)
    max_run = 50 + n // 100  # upper bound of run numbers used
    queries = {
        "correlation": [Query(correlation_id=f"run-{rng.randrange(max_run // 2)}")
                        for _ in range(rounds)],
        "type": [Query(types=(t,)) for t in
                 rng.choices(["tool.denied", "run.note", "file.changed", "model.called"],
                             k=rounds)],
        "actor": [Query(actors=(a,)) for a in
                  rng.choices(["user:ann", "claude-code", "agent:reviewer"], k=rounds)],
        "type prefix": [Query(types=(t,)) for t in
                        rng.choices(["tool.*", "model.*", "run.*"], k=rounds)],
    }
    out: dict[str, dict[str, float | None]] = {}

    async def p50(url: str) -> dict[str, float]:
        store = await ours(url)
        try:
            res = {}
            for name, qs in queries.items():
                await store.read_page(qs[0], limit=100)
                samples = []
                for q in qs:
                    after = None
                    t = time.perf_counter()
                    await store.read_page(q, after=after, limit=100)
                    samples.append(time.perf_counter() - t)
                res[name] = median_ms(samples)
            return res
        finally:
            await store.close()

    out["sqlite"] = dict(await p50(f"sqlite:///{db}"))
    out["jsonl"] = dict(await p50(f"file:///{jdir}")) if have_jsonl else dict.fromkeys(queries)
    raw = sqlite3.connect(str(db))
    res: dict[str, float | None] = {}
    for name, qs in queries.items():
        samples = []
        for q in qs:
            if name == "type prefix":
                continue
            sql, params = page_sql(q, 0, 100)
            t = time.perf_counter()
            raw.execute(sql, params).fetchall()
            samples.append(time.perf_counter() - t)
        res[name] = median_ms(samples) if samples else None
    raw.close()
    out["raw_sqlite"] = res
    return out


# ---- report --------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke: fewer rounds, smaller DB")
    ap.add_argument("--events", type=int, help="events in the query store (default 1,000,000)")
    args = ap.parse_args(argv)
    quick = args.quick
    rounds_a = 30 if quick else 150
    total_b = 240 if quick else 1600
    rounds_c = 30 if quick else 200
    n = args.events or (1_000_000 if not quick or (DATA / "events-1000000.db.done").exists()
                        else 100_000)

    print(f"bench.store  python {platform.python_version()}  sqlite {sqlite3.sqlite_version}  "
          f"{os.cpu_count()} cores  {platform.machine()}  {'quick' if quick else 'full'}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-"))
    try:
        a = await bench_batched(tmp, rounds_a)
        b = await bench_single(tmp, total_b)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    c = await bench_queries(n, rounds_c)

    cols = ["sqlite", "jsonl", "eventsourcing", "raw_sqlite", "raw_file"]
    names = ["ours sqlite", "ours jsonl", "eventsourcing sqlite", "raw sqlite3", "raw file"]

    def rate(sec: float | None) -> str:
        return NA if sec is None else f"{100 / sec:,.0f} ev/s ({sec * 1000:.2f} ms)"

    table("(a) batched appends: 100 events of ~1 KB per append, median",
          ["contender", "throughput (median ms per append)"],
          [[nm, rate(a[c_])] for nm, c_ in zip(names, cols, strict=True)])
    table("(b) single-event appends, events/s",
          ["contender", "1 writer", "8 concurrent writers"],
          [[nm, fmt(b[c_][1]), fmt(b[c_][8])] for nm, c_ in zip(names, cols, strict=True)])
    qnames = list(c["sqlite"])
    table(f"(c) first page (100 events) over {n:,} events, p50 ms",
          ["contender", *qnames],
          [[nm, *(fmt(c[c_][q]) for q in qnames)]
           for nm, c_ in (("ours sqlite", "sqlite"), ("ours jsonl", "jsonl"),
                          ("raw sqlite3 (same SQL, no decoding)", "raw_sqlite"))]
          + [["eventsourcing sqlite", *(["n/a (no such filters)"] * len(qnames))]])

    sa, ea, ra = a["sqlite"], a["eventsourcing"], a["raw_sqlite"]
    assert sa is not None and ea is not None and ra is not None
    s8, e1 = b["sqlite"][8], b["eventsourcing"][1]
    assert s8 is not None and e1 is not None
    bars = [
        ("batched appends: ours sqlite vs eventsourcing (>= 1.0x)", ea / sa, ea / sa >= 1.0),
        ("batched appends: ours sqlite vs raw sqlite3 floor (>= 0.5x)", ra / sa, ra / sa >= 0.5),
        ("8 writers ours sqlite vs eventsourcing single inserts (>= 2.0x)", s8 / e1,
         s8 / e1 >= 2.0),
    ]
    for q in ("correlation", "type", "actor"):
        v = c["sqlite"][q]
        assert v is not None
        bars.append((f"first page, {q} query over {n:,} events: p50 {v:.2f} ms (< 10 ms)",
                     10 / v, v < 10))
    print("\nbars (ratio > 1 is better than the bar's reference)")
    failed = 0
    for label, ratio, ok in bars:
        failed += not ok
        print(f"  {verdict(ok)}  {ratio:6.2f}x  {label}")
    if n < 1_000_000:
        print(f"  note: the query store has {n:,} events (--quick without a cached 1M store)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
