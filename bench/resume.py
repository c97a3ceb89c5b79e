"""What resuming a crashed session costs, against peers measured in the same run.

A session of N turns (one Read per turn, script provider) is recorded in a SQLite store;
its stream minus the last two events (the final answer and ``agent.finished``) is copied
into a second SQLite store: the state a SIGKILL right before the final model call leaves.
Medians of R rounds:

* ``load_session`` (read the stream, rebuild the conversation) vs. ``load_run`` (replay's
  read + fold of the same run): resume's reading should cost about what replay's does;
* resuming and finishing the session (rebuild, ``agent.resumed``, one model call,
  ``agent.finished``) vs. running a fresh one-turn session: what a resume adds to the
  work it continues; per recorded turn.

    python -m bench.resume [--turns 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

DEFN = ("---\nname: bench\ndescription: bench\ntools: Read\npermissionMode: acceptEdits\n"
        "---\nRead the file.\n")


def _script(turns: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"tool_calls": [{"name": "Read", "input": {"file_path": "a.txt"}}]}
        for _ in range(turns - 1)]
    out.append({"text": "done"})
    return out


async def _record(root: Path, turns: int) -> tuple[str, str, str]:
    """Record the session; return (full store url, crashed store url, session id)."""
    from agents.definition import parse_definition
    from agents.loop import AgentSession
    from agents.providers.script import ScriptProvider
    from eventstore.model import NewEvent
    from eventstore.urls import open_store

    full_url, crashed_url = f"sqlite:///{root / 'full.db'}", f"sqlite:///{root / 'crash.db'}"
    store = await open_store(full_url)
    try:
        result = await AgentSession(parse_definition(DEFN), "read it", provider=ScriptProvider(
            turns=_script(turns)), store=store, workspace=root, run_id="bench").run()
        events = [e async for e in store.read_stream(f"session-{result.session_id}")]
    finally:
        await store.close()
    crashed = await open_store(crashed_url)
    try:
        await crashed.append(events[0].stream, [NewEvent(
            type=e.type, data=e.data, actor=e.actor, correlation_id=e.correlation_id,
            causation_id=e.causation_id, id=e.id, occurred_at=e.occurred_at)
            for e in events[:-2]])
    finally:
        await crashed.close()
    return full_url, crashed_url, result.session_id


async def _timed(fn: Any, *args: Any) -> float:
    t = time.perf_counter()
    await fn(*args)
    return (time.perf_counter() - t) * 1000


async def main(turns: int, rounds: int) -> None:
    from agents.definition import parse_definition
    from agents.loop import AgentSession
    from agents.providers.script import ScriptProvider
    from agents.resume import load_session
    from eventstore.model import NewEvent
    from eventstore.urls import open_store
    from orchestrator.cli.replay import load_run

    defn = parse_definition(DEFN)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "a.txt").write_text("hello\n")
        _, crashed_url, sid = await _record(root, turns)
        store = await open_store(crashed_url)
        crashed = [e async for e in store.read_stream(f"session-{sid}")]
        await store.close()
        loads, folds, resumes, fresh = [], [], [], []
        for r in range(rounds):
            store = await open_store(crashed_url)
            try:
                loads.append(await _timed(load_session, store, sid))
                folds.append(await _timed(load_run, store, "bench"))
            finally:
                await store.close()
            # a fresh copy of the crashed state per round (a resume appends to it)
            url = f"sqlite:///{root / f'round{r}.db'}"
            store = await open_store(url)
            try:
                await store.append(crashed[0].stream, [NewEvent(
                    type=e.type, data=e.data, actor=e.actor, correlation_id=e.correlation_id,
                    causation_id=e.causation_id, id=e.id, occurred_at=e.occurred_at)
                    for e in crashed])

                async def resume(store: Any) -> None:
                    log = await load_session(store, sid)
                    res = await AgentSession(
                        defn, log.prompt, provider=ScriptProvider(turns=_script(turns)),
                        store=store, workspace=root, session_id=sid, run_id="bench",
                        causation_id=log.causation_id).run(resume=log)
                    assert res.status == "completed" and res.turns == turns, res

                async def one_turn(store: Any) -> None:
                    res = await AgentSession(defn, "read it", provider=ScriptProvider(
                        turns=[{"text": "done"}]), store=store, workspace=root,
                        run_id="bench-fresh").run()
                    assert res.status == "completed"

                resumes.append(await _timed(resume, store))
                fresh.append(await _timed(one_turn, store))
            finally:
                await store.close()
    med = statistics.median
    print(f"session of {turns} turns, crashed before its final model call; "
          f"{len(crashed)} events recorded; median of {rounds} rounds (SQLite)")
    print(f"  load_session (read + rebuild):   {med(loads):8.2f} ms  "
          f"({med(loads) / turns * 1000:.1f} us per recorded turn)")
    print(f"  peer: load_run (replay's fold):  {med(folds):8.2f} ms  "
          f"ratio {med(loads) / med(folds):.2f}")
    print(f"  resume and finish:               {med(resumes):8.2f} ms")
    print(f"  peer: a fresh one-turn session:  {med(fresh):8.2f} ms  "
          f"resume adds {med(resumes) - med(fresh):.2f} ms "
          f"({(med(resumes) - med(fresh)) / turns * 1000:.1f} us per recorded turn)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    asyncio.run(main(args.turns, args.rounds))
