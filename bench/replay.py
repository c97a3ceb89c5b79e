"""Replay of a 100,000-event run to JSON on SQLite (issue 6 bar: under 2 s).

The run is generated once into ``bench/.data/replay-100k.db`` with realistic shapes (the
agent loop's fields: content blocks, usage, capped outputs with sha256, files, some
denials and model retries) and reused afterwards. What is timed is what ``orchestrail
replay RUN --format json`` does after opening the store: read the run's events by
correlation id, fold them, build the JSON document and serialise it.

    python -m bench.replay [--events 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BAR_S = 2.0
DATA = Path(__file__).resolve().parent / ".data"
RUN_ID = "bench-replay-run"


def _session_events(sid: str, turns: int, t0: datetime) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    t = t0

    def ev(type_: str, data: dict[str, Any]) -> None:
        nonlocal t
        t += timedelta(milliseconds=37)
        out.append({"type": type_, "data": data, "occurred_at": t})

    ev("agent.started", {"agent": "backend-implementer", "definition_hash": "sha256:" + "a" * 64,
                         "model": "claude-sonnet-4-5", "provider": "anthropic",
                         "allowed_tools": ["Read", "Write", "Edit", "Bash"],
                         "parent_session": None, "session_id": sid, "prompt": "Do the task"})
    for n in range(1, turns + 1):
        called = {"turn": n, "attempt": 1, "model": "claude-sonnet-4-5",
                  "provider": "anthropic", "params": {"max_tokens": 8192}, "messages": 2 * n,
                  "message_digest": "d" * 64, "fingerprint": "f" * 64,
                  "system_sha256": "s" * 64, "tools": ["Read", "Write", "Edit", "Bash"]}
        ev("model.called", called)
        if n % 50 == 0:
            ev("model.failed", {"turn": n, "attempt": 1, "error": "429 rate limited",
                                "status": 429, "transient": True, "will_retry": True,
                                "delay_s": 1.5})
            ev("model.called", {**called, "attempt": 2})
        use = f"toolu_{sid}_{n}"
        cmd = {"command": f"python -m pytest -q tests/test_{n}.py"}
        ev("model.responded", {
            "turn": n, "attempt": 1, "model": "claude-sonnet-4-5", "response_id": f"msg_{n}",
            "content": [{"type": "text", "text": f"Step {n}: running the tests again."},
                        {"type": "tool_use", "id": use, "name": "Bash", "input": cmd}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 1200 + n, "output_tokens": 90,
                      "cache_read_input_tokens": 800, "cache_creation_input_tokens": 0},
            "latency_ms": 812.5, "cost_usd": 0.0051, "request_fingerprint": "f" * 64})
        ev("tool.requested", {"turn": n, "tool_use_id": use, "tool": "Bash", "input": cmd})
        if n % 20 == 0:
            ev("tool.denied", {"turn": n, "tool_use_id": use, "tool": "Bash", "rule": None,
                               "reason": "not allowed by Bash(python -m pytest:*)",
                               "decision": {"behavior": "deny"}})
        else:
            output = ("." * 40 + f" {n} passed in 0.31s\n") * 12
            ev("tool.completed", {
                "turn": n, "tool_use_id": use, "tool": "Bash", "is_error": False,
                "output": output, "output_sha256": hashlib.sha256(output.encode()).hexdigest(),
                "output_chars": len(output), "truncated": False, "exit_code": 0,
                "timed_out": False, "duration_ms": 311.2,
                "files": [{"path": f"tests/test_{n}.py", "sha256": "e" * 64}] if n % 7 == 0
                else []})
    ev("agent.finished", {"turns": turns, "status": "completed", "final_text": "done",
                          "usage": {"input_tokens": 1, "output_tokens": 1}, "cost_usd": 0.5})
    return out


async def build(path: Path, events: int) -> None:
    from eventstore.backends.sqlite import SQLiteStore
    from eventstore.model import NewEvent

    store = await SQLiteStore.open(path, create=True)
    try:
        t0 = datetime(2026, 11, 1, tzinfo=UTC)
        turns, sessions = 250, max(1, events // 1000)
        await store.append(f"run-{RUN_ID}", [NewEvent(
            type="run.started", data={"tasks": [f"T{i}" for i in range(sessions)]},
            actor="orchestrator", correlation_id=RUN_ID, occurred_at=t0)])
        for i in range(sessions):
            sid = f"S{i:04d}"
            disp = NewEvent(type="task.dispatched", actor="orchestrator", correlation_id=RUN_ID,
                            data={"task_id": f"T{i}", "agent": "backend-implementer",
                                  "session_id": sid, "attempt": 1}, occurred_at=t0)
            await store.append(f"run-{RUN_ID}", [disp])
            raw = _session_events(sid, turns, t0 + timedelta(minutes=i))
            batch = [NewEvent(type=e["type"], data=e["data"], actor="agent:backend-implementer",
                              correlation_id=RUN_ID, causation_id=disp.id,
                              occurred_at=e["occurred_at"]) for e in raw]
            for k in range(0, len(batch), 500):
                await store.append(f"session-{sid}", batch[k:k + 500])
        await store.append(f"run-{RUN_ID}", [NewEvent(
            type="run.finished", data={"status": "completed"}, actor="orchestrator",
            correlation_id=RUN_ID, occurred_at=t0 + timedelta(hours=3))])
    finally:
        await store.close()


async def once(path: Path) -> tuple[float, int, int]:
    from eventstore.backends.sqlite import SQLiteStore
    from orchestrator.cli.replay import dumps_bytes, gc_paused, replay_document

    store = await SQLiteStore.open(path, create=False)
    try:
        t = time.perf_counter()
        state, doc = await replay_document(store, RUN_ID)
        with gc_paused():
            text = dumps_bytes(doc)
        return time.perf_counter() - t, state.events, len(text)
    finally:
        await store.close()


def generated(events: int) -> Path:
    """The store of a generated run of about ``events`` events (built once, then reused)."""
    DATA.mkdir(exist_ok=True)
    path = DATA / f"replay-{events}.db"
    if not path.exists():
        tmp = path.with_suffix(".tmp.db")
        tmp.unlink(missing_ok=True)
        t = time.perf_counter()
        asyncio.run(build(tmp, events))
        tmp.rename(path)
        print(f"generated {path} in {time.perf_counter() - t:.1f}s")
    return path


async def stages(path: Path) -> dict[str, float]:
    """The same work one stage at a time (no overlap of reading and folding): where the
    time goes."""
    from eventstore.backends.sqlite import SQLiteStore
    from orchestrator.cli.replay import _pages, dumps_bytes, gc_paused, run_query
    from orchestrator.fold import RunState

    store = await SQLiteStore.open(path, create=False)
    try:
        with gc_paused():
            t0 = time.perf_counter()
            events = [ev async for page in _pages(store, run_query(RUN_ID, ()))
                      for ev in page]
            t1 = time.perf_counter()
            state = RunState(RUN_ID)
            for ev in events:
                state.apply(ev)
            t2 = time.perf_counter()
            doc = state.to_dict()
            t3 = time.perf_counter()
            dumps_bytes(doc)
            t4 = time.perf_counter()
        return {"read": t1 - t0, "fold": t2 - t1, "document": t3 - t2, "serialise": t4 - t3}
    finally:
        await store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--stages", action="store_true",
                    help="Also time read, fold, document and serialise one at a time.")
    args = ap.parse_args()
    path = generated(args.events)
    times = []
    for _ in range(args.rounds):
        secs, n, size = asyncio.run(once(path))
        times.append(secs)
    med = statistics.median(times)
    print(f"replay to JSON: {n:,} events, {size / 1e6:.1f} MB JSON; median {med:.3f}s "
          f"(best {min(times):.3f}s) over {args.rounds} rounds; bar {BAR_S:.0f}s; "
          f"ratio {med / BAR_S:.2f} of the bar")
    if args.stages:
        rounds = [asyncio.run(stages(path)) for _ in range(args.rounds)]
        print("  stages (medians): " + ", ".join(
            f"{k} {statistics.median(r[k] for r in rounds):.3f}s" for k in rounds[0]))


if __name__ == "__main__":
    main()
