"""``python -m bench.store [--quick]``: our stores against eventsourcing and the raw floors.

Prints, from one run, medians and ratios for
  (a) batched appends, 100 events of ~1 KB per append;
  (b) single-event appends with 1 writer and with 8 concurrent writers (asyncio tasks;
      eventsourcing gets 8 threads, its own concurrency model);
  (c) the first page (100 events) of a correlation-id, a type and an actor query over
      1,000,000 stored events (p50), on a database built once and cached in bench/.data/;
  (d) reading 100,000 of those events in position order (the read side of a replay).
and PASS/FAIL for each bar of issue 2. ``--quick`` (CI smoke, about a minute) uses fewer
rounds and, unless the 1M database is already cached, a 20,000-event one (a smoke test of
the query path, not a measurement of the bar).
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
from pathlib import Path
from typing import Any

from bench.peers import EventsourcingSQLite, RawFile, RawSQLite, run_threads
from bench.workload import batches, new_event, rows_for
from eventstore.backends.sqlite_query import page_sql
from eventstore.backends.sqlite_schema import COLUMNS
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


#: journal_mode / synchronous of each SQLite contender's writing connection, as read back
#: from the live connections during (a): the durability each one's numbers were paid for.
durability: dict[str, str] = {}


async def sqlite_durability(store: EventStore) -> str:
    from bench.peers import durability_text
    from eventstore.backends.sqlite import SQLiteStore

    assert isinstance(store, SQLiteStore)

    def read(conn: sqlite3.Connection) -> str:
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
        return durability_text(journal, conn.execute("PRAGMA synchronous").fetchone()[0])

    return await store._writer.run(read)


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
    """Median seconds per append of 100 x ~1 KB events, per contender.

    Contenders take turns, one append each per round, so a load swing on a shared
    machine hits all of them alike instead of whichever happened to run then.
    """
    work = batches(1, rounds + 3, 100)
    stores: dict[str, EventStore] = {"sqlite": await ours(f"sqlite:///{tmp}/a-ours.db")}
    if jsonl_available():
        stores["jsonl"] = await ours(f"file:///{tmp}/a-jsonl")
    es = EventsourcingSQLite(tmp / "a-es.db")
    domain = [es.domain_events(b) for b in work]
    raw = RawSQLite(tmp / "a-raw.db")
    params = [RawSQLite.params(rows_for(f"run-{i}", b)) for i, b in enumerate(work)]
    raw_file = RawFile(tmp / "a-raw.jsonl")
    blobs = [RawFile.lines(rows_for(f"run-{i}", b), 1 + i * 100) for i, b in enumerate(work)]
    samples: dict[str, list[float]] = {k: [] for k in
                                       [*stores, "eventsourcing", "raw_sqlite", "raw_file"]}
    try:
        for i, b in enumerate(work):
            for name, store in stores.items():
                t = time.perf_counter()
                await store.append(f"run-{i}", b)
                samples[name].append(time.perf_counter() - t)
            t = time.perf_counter()
            es.insert(domain[i])
            samples["eventsourcing"].append(time.perf_counter() - t)
            t = time.perf_counter()
            raw.insert(params[i])
            samples["raw_sqlite"].append(time.perf_counter() - t)
            t = time.perf_counter()
            raw_file.write(blobs[i])
            samples["raw_file"].append(time.perf_counter() - t)
        durability["ours sqlite"] = await sqlite_durability(stores["sqlite"])
        durability["eventsourcing"] = es.durability()
        durability["raw sqlite3"] = raw.durability()
    finally:
        for store in stores.values():
            await store.close()
        es.close()
        raw.close()
        raw_file.close()
    out: dict[str, float | None] = {k: statistics.median(v[3:]) for k, v in samples.items()}
    out.setdefault("jsonl", None)
    return out


# ---- (b) single-event appends ------------------------------------------------------------------


async def bench_single(tmp: Path, total: int) -> dict[str, dict[int, float | None]]:
    """Events per second for single-event appends, 1 writer and 8 concurrent writers.

    Run in slices: every contender does a slice of its work in turn, and rates come from
    the summed times, so load swings are shared out evenly.
    """
    slices = 4
    rng = random.Random(2)
    events = [new_event(rng, i, f"run-s-{i % 50}") for i in range(total * 2 + 16)]
    per_slice = total // slices
    spent: dict[tuple[str, int], float] = {}
    done: dict[tuple[str, int], int] = {}

    def note(key: tuple[str, int], seconds: float, count: int) -> None:
        spent[key] = spent.get(key, 0.0) + seconds
        done[key] = done.get(key, 0) + count

    stores: dict[tuple[str, int], EventStore] = {}
    for w in (1, 8):
        stores[("sqlite", w)] = await ours(f"sqlite:///{tmp}/b-ours-{w}.db")
        if jsonl_available():
            stores[("jsonl", w)] = await ours(f"file:///{tmp}/b-jsonl-{w}")
    for store in stores.values():
        await store.append("warm-up", events[-2:])
    es = EventsourcingSQLite(tmp / "b-es.db")
    es.insert(es.domain_events(events[-2:]))
    es_singles = [es.domain_events([e]) for e in events[: total * 2]]
    raw = RawSQLite(tmp / "b-raw.db")
    raw_params = [RawSQLite.params(rows_for(f"s-{i}", [e]))[0]
                  for i, e in enumerate(events[:total])]
    raw_file = RawFile(tmp / "b-raw.jsonl")
    blobs = [RawFile.lines(rows_for(f"s-{i}", [e]), i + 1) for i, e in enumerate(events[:total])]

    async def run_store(key: tuple[str, int], sl: int) -> None:
        store, writers = stores[key], key[1]
        per = per_slice // writers
        base = sl * per_slice

        async def writer(w: int) -> None:
            for i in range(per):
                await store.append(f"w-{w}", [events[base + w * per + i]])

        t = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(writers)))
        note(key, time.perf_counter() - t, per * writers)

    def es_writer(chunk: list[Any]) -> None:
        for d in chunk:
            es.insert(d)

    try:
        for sl in range(slices):
            lo, hi = sl * per_slice, (sl + 1) * per_slice
            for key in stores:
                await run_store(key, sl)
            t = time.perf_counter()
            es_writer(es_singles[lo:hi])
            note(("eventsourcing", 1), time.perf_counter() - t, hi - lo)
            per = per_slice // 8
            chunks = [es_singles[total + lo + w * per: total + lo + (w + 1) * per]
                      for w in range(8)]
            t = time.perf_counter()
            run_threads(8, es_writer, chunks)
            note(("eventsourcing", 8), time.perf_counter() - t, per * 8)
            t = time.perf_counter()
            for p in raw_params[lo:hi]:
                raw.insert([p])
            note(("raw_sqlite", 1), time.perf_counter() - t, hi - lo)
            t = time.perf_counter()
            for blob in blobs[lo:hi]:
                raw_file.write(blob)
            note(("raw_file", 1), time.perf_counter() - t, hi - lo)
    finally:
        for store in stores.values():
            await store.close()
        es.close()
        raw.close()
        raw_file.close()
    out: dict[str, dict[int, float | None]] = {}
    for name in ("sqlite", "jsonl", "eventsourcing", "raw_sqlite", "raw_file"):
        out[name] = {w: (done[(name, w)] / spent[(name, w)] if (name, w) in spent else None)
                     for w in (1, 8)}
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


# ---- (d) reading many events ----------------------------------------------------------------


async def bench_read(n: int, count: int, rounds: int) -> dict[str, float]:
    """Median seconds to read ``count`` events in position order, pages of 2,000.

    What a replay pays before folding (issue 6: a 100,000-event run to JSON in under 2 s):
    ours returns decoded ``RecordedEvent``s; the raw floor fetches the same rows with the
    same SQL and decodes nothing. Both read the (a)..(c) query store, alternating.
    """
    db = DATA / f"events-{n}.db"
    count = min(count, n)
    page = 2000
    store = await ours(f"sqlite:///{db}")
    raw = sqlite3.connect(str(db))
    sql = f"SELECT {COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT {page}"
    samples: dict[str, list[float]] = {"sqlite": [], "raw_sqlite": []}
    try:
        for _ in range(rounds):
            t = time.perf_counter()
            got, after = 0, 0
            while got < count:
                events = (await store.read_page(Query(), after=after, limit=page)).events
                got += len(events)
                after = events[-1].position
            samples["sqlite"].append(time.perf_counter() - t)
            t = time.perf_counter()
            got, after = 0, 0
            while got < count:
                rows = raw.execute(sql, (after,)).fetchall()
                got += len(rows)
                after = rows[-1][0]
            samples["raw_sqlite"].append(time.perf_counter() - t)
    finally:
        await store.close()
        raw.close()
    return {k: statistics.median(v) for k, v in samples.items()}


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
                        else 20_000)

    print(f"bench.store  python {platform.python_version()}  sqlite {sqlite3.sqlite_version}  "
          f"{os.cpu_count()} cores  {platform.machine()}  {'quick' if quick else 'full'}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-"))
    try:
        a = await bench_batched(tmp, rounds_a)
        b = await bench_single(tmp, total_b)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    c = await bench_queries(n, rounds_c)
    read_count = 100_000
    d = await bench_read(n, read_count, 3 if quick else 7)

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

    table(f"(d) read {min(read_count, n):,} events in position order (pages of 2,000), median",
          ["contender", "seconds", "events/s"],
          [[nm, f"{d[k]:.3f}", f"{min(read_count, n) / d[k]:,.0f}"]
           for nm, k in (("ours sqlite (decoded RecordedEvent)", "sqlite"),
                         ("raw sqlite3 (row tuples, no decoding)", "raw_sqlite"))])

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
    print("\ndurability of the SQLite writers (read from their connections):")
    for name, text in durability.items():
        print(f"  {name:<15} {text}")
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
