"""What lead mode and reviews cost per dispatched task, against the fixed dispatcher.

N trivial tasks (one scripted turn, no tool), the script provider, a SQLite store in a
temp directory, workspace mode ``none``; three runs of the same backlog, each on a fresh
store, in the same process:

* fixed: ``orchestrail run`` (the peer);
* lead: ``run --lead``: a lead session whose scripted turns make one ``Agent`` call per
  task (its turn, ``tool.requested``/``tool.completed``, the task lookup, the backlog
  status it is sent back), then the same attempt as the fixed run;
* review: ``run --review``: the fixed run plus one reviewer session per task (one scripted
  ``VERDICT: accept`` turn, ``review.requested``/``review.completed``, reading the
  attempt's session stream for its patch).

Per task = (mode - fixed) / N, median of R rounds; the ratio is mode / fixed.

    python -m bench.lead [--tasks 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path
from typing import Any

import yaml

AGENT = "---\nname: bench\ndescription: bench\ntools: Read\n---\nSay done.\n"
LEAD = "---\nname: orchestrator\ndescription: lead\ntools: Agent, Read\n---\nDispatch.\n"


def _project(root: Path, n: int) -> Path:
    p = root / "proj"
    agents = p / ".claude" / "agents"
    agents.mkdir(parents=True)
    (agents / "bench.md").write_text(AGENT)
    (agents / "orchestrator.md").write_text(LEAD)
    (agents / "reviewer.md").write_text(AGENT.replace("name: bench", "name: reviewer"))
    lead = [{"tool_calls": [{"name": "Agent", "input": {
        "subagent_type": "bench", "description": f"t{i:04d}: go", "prompt": "Say done."}}]}
            for i in range(n)] + ["all done"]
    (p / "script.yaml").write_text(yaml.safe_dump({
        "tasks": {"_lead": lead, "_review": ["VERDICT: accept - fine"]},
        "default": ["done"]}))
    return p


async def _run(root: Path, n: int, mode: str) -> float:
    from bench.orchestrator import timed_run
    from eventstore.urls import open_store
    from orchestrator.backlog import Backlog, TaskSpec
    from orchestrator.runner import RunConfig

    p = _project(root, n)
    store = await open_store(f"sqlite:///{root}/run.db")
    backlog = await Backlog.load(store)
    await backlog.add([TaskSpec(id=f"t{i:04d}", title=f"task {i}", agent="bench")
                       for i in range(n)])
    cfg = RunConfig(project=p, script=p / "script.yaml", workspace="none",
                    lead="orchestrator" if mode == "lead" else None,
                    review="reviewer" if mode == "review" else None)
    took, _ = await timed_run(store, cfg, n)
    await store.close()
    return took


def _round(n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for mode in ("fixed", "lead", "review"):
        with tempfile.TemporaryDirectory() as d:
            out[mode] = asyncio.run(_run(Path(d), n, mode))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    n = args.tasks
    rounds: list[dict[str, Any]] = [_round(n) for _ in range(args.rounds)]
    fixed = statistics.median(r["fixed"] / n * 1000 for r in rounds)
    print(f"{n} trivial tasks x {args.rounds} rounds, SQLite, script provider, workspace none")
    print(f"  fixed dispatcher:        {fixed:8.3f} ms/task")
    for mode in ("lead", "review"):
        per = statistics.median(r[mode] / n * 1000 for r in rounds)
        extra = [(r[mode] - r["fixed"]) / n * 1000 for r in rounds]
        ratio = statistics.median(r[mode] / r["fixed"] for r in rounds)
        print(f"  --{mode:<6}                {per:8.3f} ms/task, +{statistics.median(extra):.3f}"
              f" ms/task over fixed (rounds {', '.join(f'{x:.3f}' for x in extra)}), "
              f"ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
