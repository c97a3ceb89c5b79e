"""``python -m bench.claude_import [--runs N] [--mb 100]``: throughput of the transcript import.

The bar (issue 7): importing 100 MB of Claude Code transcripts runs at 20 MB/s or more.
The data: a tree like ``~/.claude/projects`` (generated once by
``tests/fakes/claude_transcripts.py``, cached under ``bench/.data/``): about 450 sessions
across 20 project directories, in all three layouts (60% ``<session>/subagents/`` with
``.meta.json``, 25% flat ``agent-*.jsonl``, 15% inline sidechains), with thinking, text
and tool_use blocks one record each, tool results of realistic sizes (file reads up to
~20 KB), progress records, snapshots, attachments and compactions.

Each run imports the whole tree into a fresh SQLite store (default settings: WAL,
``synchronous=FULL``) through the same code as ``orchestrail import claude-code``
(discovery, parsing, mapping, redaction, hashing, appends). The floor, measured in the
same run and taking turns with the import: reading every file and parsing every line
with the same JSON parser, which any importer must do. Printed: medians, MB/s, the
ratio to the floor. After the runs, a re-import into the last store must append nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.hook import count_and_verify

BAR_MB_S = 20.0
DATA = Path(__file__).resolve().parent / ".data"
VERSION = 1  # bump when the generator changes: the cache is rebuilt


def generate(target_mb: float) -> Path:
    """The cached tree (rebuilt when missing or of another size/version)."""
    from tests.fakes.claude_transcripts import write_session

    root = DATA / f"claude-projects-v{VERSION}-{target_mb:g}mb"
    marker = root / ".complete"
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rng = random.Random(7)
    total = 0
    seed = 0
    while total < target_mb * 1e6:
        seed += 1
        r = rng.random()
        layout = "nested" if r < 0.6 else "flat" if r < 0.85 else "inline"
        project = root / f"-home-dev-proj{seed % 20}"
        m = write_session(project, layout, seed, prompts=rng.randint(1, 5),
                          steps=rng.randint(4, 12))
        total += sum(p.stat().st_size for p in m.files)
    marker.write_text(json.dumps({"sessions": seed, "bytes": total}))
    return root


def tree_bytes(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*.jsonl")]
    return len(files), sum(p.stat().st_size for p in files)


def floor(root: Path) -> tuple[float, int]:
    """Read every transcript and parse every line: what no importer can skip."""
    from orchestrator.importers.claude_code import _loads

    loads = _loads()
    t0 = time.perf_counter()
    lines = 0
    for p in sorted(root.rglob("*.jsonl")):
        for line in p.read_bytes().split(b"\n"):
            if line:
                loads(line)
                lines += 1
    return time.perf_counter() - t0, lines


async def import_once(root: Path, db: Path) -> tuple[float, int, int]:
    from eventstore.urls import open_store
    from orchestrator.importers.claude_code import discover, import_sessions

    t0 = time.perf_counter()
    store = await open_store(f"sqlite:///{db}")
    try:
        sessions, _ = discover([root])
        summary = await import_sessions(store, sessions)
    finally:
        await store.close()
    elapsed = time.perf_counter() - t0
    if summary.bad_lines:
        raise SystemExit(f"bad lines in generated data: {summary.bad_lines[:3]}")
    return elapsed, summary.appended, summary.records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mb", type=float, default=100.0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    root = generate(args.mb)
    files, size = tree_bytes(root)
    mb = size / 1e6
    print(f"data: {root} ({files:,} files, {mb:.1f} MB; ready in "
          f"{time.perf_counter() - t0:.1f}s)")
    try:
        import orjson  # noqa: F401
        parser = "orjson"
    except ImportError:
        parser = "json"
    imports: list[float] = []
    floors: list[float] = []
    appended = records = lines = 0
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        db = Path(tmp) / "events.db"
        for i in range(args.runs):
            for f in Path(tmp).glob("events.db*"):
                f.unlink()
            elapsed, appended, records = asyncio.run(import_once(root, db))
            imports.append(elapsed)
            fl, lines = floor(root)
            floors.append(fl)
            print(f"  run {i + 1}: import {elapsed:6.2f}s ({mb / elapsed:5.1f} MB/s), "
                  f"floor {fl:5.2f}s", flush=True)
        stored = asyncio.run(count_and_verify(f"sqlite:///{db}"))
        again_t, again, _ = asyncio.run(import_once(root, db))
        db_mb = sum(f.stat().st_size for f in Path(tmp).glob("events.db*")) / 1e6
    imp, fl = statistics.median(imports), statistics.median(floors)
    print(f"import claude-code, {args.runs} runs, fresh SQLite store each (WAL, "
          f"synchronous=FULL), parser {parser}, python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cpus")
    print(f"{'':40}{'median s':>10}{'MB/s':>8}{'x floor':>9}")
    print(f"{'floor: read + parse every line':40}{fl:10.2f}{mb / fl:8.1f}{1.0:9.2f}")
    print(f"{'orchestrail import claude-code':40}{imp:10.2f}{mb / imp:8.1f}{imp / fl:9.2f}")
    print(f"records {records:,} (lines {lines:,}), events appended {appended:,} "
          f"({appended / imp:,.0f}/s), store {db_mb:.0f} MB, stored+verified {stored:,}")
    print(f"re-import of the same tree: {again} appended in {again_t:.2f}s "
          f"({mb / again_t:.1f} MB/s)")
    ok = mb / imp >= BAR_MB_S and stored == appended and again == 0
    print(f"bar: >= {BAR_MB_S:g} MB/s, every event stored, re-import adds nothing: "
          f"{mb / imp:.1f} MB/s -> {'PASS' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
