"""What ``rerun`` costs, against the original execution measured in the same run.

A session of N turns (one Read per turn, then a final answer; script provider) works in a
small git repository and is recorded in a SQLite store, with its git state, the way
``agents run`` records it. Medians of R rounds:

* **original**: running that session again from scratch (a fresh run id each round): the
  agent loop, the tools, the events;
* **rerun**: ``orchestrator.rerun.rerun`` of the first recording: read and fold the run,
  ``git clone --shared`` at the recorded commit, the same loop with the replay provider,
  and the tool-result check before every turn (it folds the rerun's new events).

The ratio is what a rerun adds over doing the work; per turn it shows whether checking
stays linear (it reads only the events appended since the last turn).

    python -m bench.rerun [--turns 200] [--rounds 5]
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

from bench.resume import DEFN, _script  # the same session shape as the resume bench


def _repo(root: Path) -> Path:
    repo = root / "repo"
    (repo / ".claude" / "agents").mkdir(parents=True)
    (repo / ".claude" / "agents" / "bench.md").write_text(DEFN)
    (repo / "a.txt").write_text("hello\n" * 50)
    git = ["git", "-c", "user.email=b@example.com", "-c", "user.name=b"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=repo, check=True)
    return repo


async def _original(store: Any, repo: Path, turns: int, run_id: str) -> float:
    from agents.discovery import load_agents
    from agents.loop import AgentSession
    from agents.providers.script import ScriptProvider
    from orchestrator.workspace import git_info

    t0 = time.perf_counter()
    git = await git_info(repo)
    session = AgentSession(load_agents(repo).get("bench"), "read it",
                           provider=ScriptProvider(turns=_script(turns)), store=store,
                           workspace=repo, run_id=run_id, started_extra={"git": git})
    result = await session.run()
    assert result.ok, result.error
    return time.perf_counter() - t0


async def main(turns: int, rounds: int) -> None:
    from eventstore.urls import open_store
    from orchestrator.rerun import RerunOptions, rerun

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = _repo(root)
        store = await open_store(f"sqlite:///{root / 'events.db'}")
        try:
            # interleaved, so both see the same load on a shared machine
            originals = [await _original(store, repo, turns, "bench-0")]
            reruns = []
            for i in range(rounds):
                if i:
                    originals.append(await _original(store, repo, turns, f"bench-{i}"))
                t0 = time.perf_counter()
                report = await rerun(store, "bench-0", RerunOptions(run_id=f"re-{i}"))
                reruns.append(time.perf_counter() - t0)
                assert report["divergence"] is None, report["divergence"]
                assert report["sessions"][0]["tool_calls_compared"] == turns - 1
        finally:
            await store.close()
    o, r = statistics.median(originals), statistics.median(reruns)
    print(f"session of {turns} turns ({turns - 1} Read calls), {rounds} rounds, SQLite")
    print(f"  original execution  median {o * 1000:8.1f} ms  ({o / turns * 1000:.2f} ms/turn)")
    print(f"  rerun               median {r * 1000:8.1f} ms  ({r / turns * 1000:.2f} ms/turn)")
    print(f"  rerun / original    {r / o:.2f}x  (adds {(r - o) * 1000:.1f} ms: fold, clone, "
          "checks)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.turns, args.rounds))
