"""What ``rerun`` of a lead run costs, against recording that run, measured in the same run.

The demo's story (examples/scripts/story-4.2.yaml) run as ``orchestrail run --lead
--review`` in a fresh scratch git project (as examples/demo.sh prepares it): the lead, 7
subagent sessions in their worktrees, 7 reviewers; pytest runs for real. Each round:

* **run**: recording it (``orchestrail run --lead --review --script ...``), as a user runs
  it (a process, a SQLite store, git worktrees, the commits of each task);
* **rerun**: ``orchestrail rerun`` of that recording: 15 sessions executed again, each in
  its own ``git clone --shared`` scratch workspace, children through the lead's Agent
  calls, reviews after each child.

Medians of R rounds and the median of the per-round ratios (the machine's load moves both
sides of a round alike).

    python -m bench.rerun_lead [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORCH = str(Path(sys.executable).parent / "orchestrail")


def _project(root: Path) -> Path:
    p = root / "story"
    (p / ".claude" / "agents").mkdir(parents=True)
    for name in ("backend-implementer", "reviewer", "orchestrator"):
        shutil.copy(ROOT / ".claude" / "agents" / f"{name}.md", p / ".claude" / "agents")
    shutil.copy(ROOT / "examples" / "stories" / "story-4.2-event-store-backend-selection.md",
                p / "story.md")
    (p / ".gitignore").write_text(".orchestrail/\n__pycache__/\n.pytest_cache/\n")
    git = ["git", "-c", "user.email=b@example.com", "-c", "user.name=b"]
    subprocess.run(["git", "init", "-q"], cwd=p, check=True)
    subprocess.run([*git, "add", "-A"], cwd=p, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=p, check=True)
    for args in (("task", "import", "story.md", "--agent", "backend-implementer",
                  "--sequential"),
                 ("task", "add", "Review", "--id", "story-4-2.review", "--agent", "reviewer",
                  "--depends-on", "story-4-2.t6", "--prompt", "Review the work, run the tests.")):
        _cli(p, *args)
    return p


def _cli(cwd: Path, *args: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRAIL_")}
    env["TMPDIR"] = str(cwd.parent / "tmp")
    t0 = time.perf_counter()
    out = subprocess.run([ORCH, *args], cwd=cwd, capture_output=True, text=True, env=env)
    took = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"orchestrail {' '.join(args)}: exit {out.returncode}\n"
                         f"{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    runs, reruns = [], []
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="bench-rerun-lead-") as tmp:
            (Path(tmp) / "tmp").mkdir()
            p = _project(Path(tmp))
            runs.append(_cli(p, "run", "--lead", "--review", "--script",
                             str(ROOT / "examples" / "scripts" / "story-4.2.yaml"),
                             "--run-id", "led"))
            reruns.append(_cli(p, "rerun", "led"))
        print(f"round {i + 1}: run {runs[-1]:.2f} s, rerun {reruns[-1]:.2f} s", flush=True)
    ratios = [b / a for a, b in zip(runs, reruns, strict=True)]
    print(f"run --lead --review (15 sessions): median {statistics.median(runs):.2f} s")
    print(f"rerun of it:                        median {statistics.median(reruns):.2f} s")
    print(f"ratio rerun/run: median {statistics.median(ratios):.2f}x "
          f"(rounds {min(ratios):.2f}-{max(ratios):.2f}x)")


if __name__ == "__main__":
    main()
