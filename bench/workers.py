"""``python -m bench.workers``: what working a backlog through ``orchestrail worker``
costs, against ``orchestrail run`` on the same backlog, and what 3 worker processes buy.

N trivial tasks (one scripted turn, no tool), the script provider, workspace ``none``.
Measured in one invocation, contenders taking turns per round, medians of R rounds:

* in-process, SQLite: ``Runner`` (the peer) vs one ``Worker`` (``idle_exit=0``) over a
  fresh store with the same backlog: ms per task and the worker's extra per task (the
  claimable scan, the idle check, the ``worker.*`` bookkeeping);
* processes, PostgreSQL (``ORCHESTRAIL_TEST_PG_URL``, a throwaway schema per round): one
  ``orchestrail worker --once`` vs three at once, wall time to drain the backlog and the
  ratio (process start-up included: each process pays about a second of imports), for
  tasks that only compute (no tool) and tasks that wait in a tool call (``--sleep``, as
  real tasks wait on a model). With fewer free cores than workers, the CPU-only ratio
  shows contention for the cores, not the claims.

    python -m bench.workers [--tasks 200] [--rounds 3] [--pg-tasks 300] [--sleep 0.1]
                            [--no-pg]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.orchestrator import _backlog, _project

PG_URL = os.environ.get("ORCHESTRAIL_TEST_PG_URL", "postgresql://root@127.0.0.1:5432/test")
ORCHESTRAIL = str(Path(sys.executable).parent / "orchestrail")


async def _in_process(root: Path, n: int, kind: str) -> float:
    from eventstore.urls import open_store
    from orchestrator.runner import RunConfig, Runner
    from orchestrator.worker import Worker, WorkerConfig

    p = _project(root, git=False)
    store = await open_store(f"sqlite:///{root}/{kind}.db")
    await _backlog(store, n)
    cfg = RunConfig(project=p, script=p / "script.yaml", workspace="none")
    runner: Runner = Runner(store, cfg) if kind == "run" else \
        Worker(store, cfg, WorkerConfig(name="bench", idle_exit=0))
    t0 = time.perf_counter()
    await runner.prepare()
    report = await runner.run()
    took = time.perf_counter() - t0
    assert len(report.completed) == n, report.to_dict()
    await store.close()
    return took


def _pg_round(n: int, workers: int, sleep: float) -> float:
    url = f"{PG_URL}?schema=bench_w_{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        p = _project(root, git=False)
        if sleep:  # a task that waits, as real ones do (a model call, a test run)
            agent = p / ".claude" / "agents" / "bench.md"
            agent.write_text(agent.read_text().replace("tools: Read", "tools: Bash(sleep:*)"))
            (p / "script.yaml").write_text(
                f"- tool_calls: [{{name: Bash, input: {{command: 'sleep {sleep:g}'}}}}]\n"
                "- done\n")

        async def fill() -> None:
            from eventstore.urls import open_store

            store = await open_store(url)
            await _backlog(store, n)
            await store.close()

        asyncio.run(fill())
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRAIL_")}
        env["ORCHESTRAIL_STORE"] = url
        t0 = time.perf_counter()
        procs = [subprocess.Popen(
            [ORCHESTRAIL, "worker", "--once", "--workspace", "none", "--script",
             "script.yaml", "-q", "--id", f"b{i}"], cwd=p, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for i in range(workers)]
        for proc in procs:
            _, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err
        took = time.perf_counter() - t0
        _drop_schema(url)
        return took


def _drop_schema(url: str) -> None:
    import psycopg

    base, schema = url.split("?schema=")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _fmt(xs: list[float]) -> str:
    return ", ".join(f"{x:.3f}" for x in xs)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pg-tasks", type=int, default=300)
    ap.add_argument("--sleep", type=float, default=0.1,
                    help="seconds each task waits in a tool call (the second PG workload)")
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args(argv)
    n = args.tasks
    runs: list[float] = []
    workers: list[float] = []
    for _ in range(args.rounds):
        for kind, into in (("run", runs), ("worker", workers)):
            with tempfile.TemporaryDirectory() as d:
                into.append(asyncio.run(_in_process(Path(d), n, kind)) / n * 1000)
    run_ms, worker_ms = statistics.median(runs), statistics.median(workers)
    print(f"in-process, SQLite, {n} tasks x {args.rounds} rounds, script provider, no tool")
    print(f"  orchestrail run (peer):  {run_ms:8.3f} ms/task (rounds {_fmt(runs)})")
    print(f"  one worker:              {worker_ms:8.3f} ms/task (rounds {_fmt(workers)})")
    print(f"  worker / run:            {worker_ms / run_ms:8.2f}x "
          f"({worker_ms - run_ms:+.3f} ms/task)")
    if args.no_pg:
        return
    m = args.pg_tasks
    for sleep in (0.0, args.sleep):
        one: list[float] = []
        three: list[float] = []
        for _ in range(args.rounds):
            one.append(_pg_round(m, 1, sleep))
            three.append(_pg_round(m, 3, sleep))
        a, b = statistics.median(one), statistics.median(three)
        what = f"each task a Bash 'sleep {sleep:g}'" if sleep else "no tool (CPU only)"
        print(f"processes, PostgreSQL, {m} tasks x {args.rounds} rounds, {what}, "
              f"{os.cpu_count()} CPUs on this machine")
        print(f"  1 worker:   {a:7.2f} s  {m / a:7.1f} tasks/s (rounds {_fmt(one)})")
        print(f"  3 workers:  {b:7.2f} s  {m / b:7.1f} tasks/s (rounds {_fmt(three)})")
        print(f"  speed-up 3 vs 1: {a / b:.2f}x")


if __name__ == "__main__":
    main()
