"""Orchestrator overhead per dispatched task (issue 5 bar: under 5 ms).

N trivial tasks (one scripted turn, no tool), the script provider, a SQLite store in a
temp directory. Two ways to run the same N sessions, in the same process, each on a fresh
store with the same backlog:

* direct: ``AgentSession(...).run()`` N times in a row (the peer: what the sessions cost
  by themselves);
* orchestrated: ``Runner.prepare()`` + ``run()`` over the backlog (run.started, per task
  claim, task.dispatched, session, complete, backlog refresh, run.finished).

Overhead per task = (orchestrated - direct) / N, median of R rounds. The workspace mode
is ``none`` for the bar (the dispatcher itself); ``worktree`` (a git worktree, a branch,
a commit and a diff per task) is measured too and reported separately, since creating a
worktree is git's cost, paid once per task whatever the orchestrator does.

    python -m bench.orchestrator [--tasks 200] [--rounds 3] [--worktree-tasks 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

BAR_MS = 5.0
AGENT = "---\nname: bench\ndescription: bench\ntools: Read\n---\nSay done.\n"


def _project(root: Path, git: bool) -> Path:
    p = root / "proj"
    (p / ".claude" / "agents").mkdir(parents=True)
    (p / ".claude" / "agents" / "bench.md").write_text(AGENT)
    (p / "script.yaml").write_text("- done\n")
    if git:
        (p / ".gitignore").write_text(".orchestrail/\n")
        subprocess.run(["git", "init", "-q", str(p)], check=True)
        subprocess.run(["git", "-C", str(p), "add", "-A"], check=True)
        subprocess.run(["git", "-C", str(p), "-c", "user.name=b", "-c", "user.email=b@b",
                        "commit", "-qm", "init"], check=True)
    return p


async def _backlog(store: Any, n: int) -> None:
    from orchestrator.backlog import Backlog, TaskSpec

    backlog = await Backlog.load(store)
    await backlog.add([TaskSpec(id=f"t{i:04d}", title=f"task {i}", agent="bench")
                       for i in range(n)])


async def _direct(root: Path, n: int) -> float:
    from agents.discovery import load_agents
    from agents.loop import AgentSession
    from agents.providers.script import ScriptProvider
    from eventstore.urls import open_store

    p = _project(root, git=False)
    store = await open_store(f"sqlite:///{root}/direct.db")
    await _backlog(store, n)
    definition = load_agents(p).get("bench")
    t0 = time.perf_counter()
    for i in range(n):
        session = AgentSession(definition, f"task {i}", provider=ScriptProvider(turns=["done"]),
                               store=store, workspace=p, run_id="bench-direct")
        result = await session.run()
        assert result.ok, result.error
    took = time.perf_counter() - t0
    await store.close()
    return took


async def _orchestrated(root: Path, n: int, mode: str) -> tuple[float, float]:
    from eventstore.urls import open_store
    from orchestrator.runner import RunConfig

    p = _project(root, git=mode == "worktree")
    store = await open_store(f"sqlite:///{root}/run.db")
    await _backlog(store, n)
    took, report = await timed_run(
        store, RunConfig(project=p, script=p / "script.yaml", workspace=mode), n)
    await store.close()
    return took, report.session_seconds


async def timed_run(store: Any, cfg: Any, n: int) -> tuple[float, Any]:
    """Prepare and run ``cfg`` on ``store``: the wall time and the report, which must say
    all ``n`` tasks completed (a bench of a failing run measures nothing)."""
    from orchestrator.runner import Runner

    runner = Runner(store, cfg)
    t0 = time.perf_counter()
    await runner.prepare()
    report = await runner.run()
    took = time.perf_counter() - t0
    assert report.status == "completed" and len(report.completed) == n, report.to_dict()
    return took, report


def _round(n: int, mode: str) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        direct = asyncio.run(_direct(Path(a), n))
        orch, in_sessions = asyncio.run(_orchestrated(Path(b), n, mode))
    return direct, orch, in_sessions


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--worktree-tasks", type=int, default=30)
    args = ap.parse_args(argv)
    for mode, n in (("none", args.tasks), ("worktree", args.worktree_tasks)):
        if n <= 0:
            continue
        rounds = [_round(n, mode) for _ in range(args.rounds)]
        per_task = [(o - d) / n * 1000 for d, o, _ in rounds]
        outside = [(o - s) / n * 1000 for _, o, s in rounds]
        direct = statistics.median(d / n * 1000 for d, _, _ in rounds)
        orch = statistics.median(o / n * 1000 for _, o, _ in rounds)
        med = statistics.median(per_task)
        print(f"workspace={mode}: {n} tasks x {args.rounds} rounds, SQLite, script provider")
        print(f"  sessions run directly:   {direct:8.3f} ms/task")
        print(f"  orchestrated (run):      {orch:8.3f} ms/task")
        print(f"  overhead vs direct:      {med:8.3f} ms/task (median; rounds "
              f"{', '.join(f'{x:.3f}' for x in per_task)})")
        print(f"  run minus session time:  {statistics.median(outside):8.3f} ms/task")
        if mode == "none":
            print(f"  bar {BAR_MS} ms: ratio {med / BAR_MS:.2f} "
                  f"({'under' if med < BAR_MS else 'OVER'} the bar)")


if __name__ == "__main__":
    main()
