"""`orchestrail task` as a user runs it: real processes, a SQLite store in a temp dir."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from tests.conftest import ORCHESTRAIL, ROOT, SHARED

SEED = SHARED / "seeds" / "story-4.2-event-store-backend-selection.md"


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRAIL_")}
    return subprocess.run([ORCHESTRAIL, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env=env)


def ok_json(cwd: Path, *args: str) -> Any:
    out = run(cwd, *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def all_events(cwd: Path) -> list[dict[str, Any]]:
    out = run(cwd, "events", "query", "--all", "--json")
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_seed_story_import_list_show_and_idempotent_reimport(tmp_path: Path) -> None:
    story = Path(shutil.copy(SEED, tmp_path / SEED.name))
    first = run(tmp_path, "task", "import", story.name)
    assert first.returncode == 0, first.stderr
    assert "6 created" in first.stdout and "repaired 16 mis-encoded" in first.stderr
    tasks = ok_json(tmp_path, "task", "list")
    assert [t["id"] for t in tasks] == [f"story-4-2.t{i}" for i in range(1, 7)]
    assert all(t["status"] == "ready" for t in tasks)
    assert "Subtask 3.2: Add efficient indexes" in tasks[2]["prompt"]
    assert "5. Implementation supports multiple backends" in tasks[2]["prompt"]
    n = len(all_events(tmp_path))
    again = ok_json(tmp_path, "task", "import", story.name)
    assert again["created"] == [] and len(again["unchanged"]) == 6
    assert len(all_events(tmp_path)) == n
    shown = ok_json(tmp_path, "task", "show", "story-4-2.t1")
    assert [e["type"] for e in shown["events"]] == ["task.created"]
    assert shown["acceptance_criteria"][0].startswith("1. Event store supports append-only")
    text = run(tmp_path, "task", "show", "story-4-2.t1")
    assert "history:" in text.stdout and "task.created" in text.stdout
    assert run(tmp_path, "verify").returncode == 0


def test_sequential_import_and_ready_order(tmp_path: Path) -> None:
    shutil.copy(SEED, tmp_path / "s.md")
    assert run(tmp_path, "task", "import", "s.md", "--sequential").returncode == 0
    assert [t["id"] for t in ok_json(tmp_path, "task", "ready")] == ["story-4-2.t1"]
    add = run(tmp_path, "task", "add", "Urgent fix", "--priority", "0", "--id", "urgent")
    assert add.returncode == 0 and "added urgent (ready)" in add.stdout
    after = run(tmp_path, "task", "add", "Docs", "--depends-on", "urgent", "--priority", "0")
    assert after.returncode == 0 and "added docs (blocked)" in after.stdout
    assert [t["id"] for t in ok_json(tmp_path, "task", "ready")] == ["urgent", "story-4-2.t1"]
    blocked = ok_json(tmp_path, "task", "list", "--status", "blocked")
    assert len(blocked) == 6 and blocked[-1]["id"] == "docs"


def test_bad_files_are_rejected_and_nothing_is_written(tmp_path: Path) -> None:
    cyc = tmp_path / "cycle.yaml"
    cyc.write_text("tasks:\n  - {id: a, title: A, depends_on: [c]}\n"
                   "  - {id: b, title: B, depends_on: [a]}\n"
                   "  - {id: c, title: C, depends_on: [b]}\n")
    out = run(tmp_path, "task", "import", "cycle.yaml")
    assert out.returncode == 2
    assert out.stderr.strip() == ("orchestrail: error: cycle.yaml:2: tasks[0]: task 'a': "
                                  "dependency cycle a -> c -> b -> a")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("tasks:\n  - {id: a, title: A}\n  - {id: b, title: B, depends_on: [zz]}\n"
                       "  - {id: c, title: C, agent: ghost}\n")
    out = run(tmp_path, "task", "import", "unknown.yaml")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert "unknown.yaml:3: tasks[1]: task 'b': depends on unknown task 'zz'" in lines[1]
    assert "unknown.yaml:4: tasks[2]: task 'c': unknown agent 'ghost'" in lines[0]
    empty = tmp_path / "empty.md"
    empty.write_text("# Story 9: nothing\n\n## Acceptance Criteria\n\n1. x\n")
    out = run(tmp_path, "task", "import", "empty.md")
    assert out.returncode == 2 and "empty.md: no tasks found" in out.stderr
    assert not (tmp_path / ".orchestrail").exists()  # nothing was written, not even a store


def test_agents_are_checked_against_discovery(tmp_path: Path) -> None:
    agents = tmp_path / ".claude" / "agents"
    agents.mkdir(parents=True)
    shutil.copy(ROOT / ".claude" / "agents" / "reviewer.md", agents / "reviewer.md")
    shutil.copy(ROOT / ".claude" / "agents" / "backend-implementer.md", agents)
    out = run(tmp_path, "task", "import", str(ROOT / "examples" / "tasks" / "health.yaml"))
    assert out.returncode == 0, out.stderr
    assert [t["id"] for t in ok_json(tmp_path, "task", "ready")] == ["health.endpoint"]
    bad = run(tmp_path, "task", "add", "x", "--agent", "revewer")
    assert bad.returncode == 2
    assert "unknown agent 'revewer' (known: backend-implementer, reviewer)" in bad.stderr


def test_dry_run_and_unknown_task(tmp_path: Path) -> None:
    shutil.copy(SEED, tmp_path / "s.md")
    dry = ok_json(tmp_path, "task", "import", "s.md", "--dry-run")
    assert dry["dry_run"] and len(dry["created"]) == 6
    assert not (tmp_path / ".orchestrail").exists()
    run(tmp_path, "task", "import", "s.md")
    missing = run(tmp_path, "task", "show", "nope")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "orchestrail: error: no task 'nope' in the backlog"


CLAIMER = textwrap.dedent("""
    import asyncio, json, sys, time
    from pathlib import Path
    from eventstore.urls import open_store
    from orchestrator.backlog import Backlog

    async def main(url, name, go):
        store = await open_store(url)
        backlog = await Backlog.load(store)
        while not Path(go).exists():
            time.sleep(0.005)
        single = await backlog.claim("single", name)
        mine = []
        while (t := await backlog.claim_next(name)) is not None:
            mine.append(t.id)
        await store.close()
        print(json.dumps({"tasks": mine, "single": single is not None}))

    asyncio.run(main(*sys.argv[1:]))
""")


def test_two_processes_claim_each_task_exactly_once(tmp_path: Path) -> None:
    tasks = tmp_path / "many.yaml"
    tasks.write_text("tasks:\n" + "".join(f"  - {{id: t{i:02}, title: T{i}}}\n"
                                          for i in range(30))
                     + "  - {id: single, title: S, priority: 9}\n")
    assert run(tmp_path, "task", "import", "many.yaml").returncode == 0
    url = f"sqlite:///{tmp_path}/.orchestrail/events.db"
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, url, f"w{i}", str(go)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    claimed = sorted(t for r in results for t in r["tasks"])
    assert claimed == sorted(f"t{i:02}" for i in range(30))  # every task once, none twice
    events = all_events(tmp_path)
    per_stream: dict[str, int] = {}
    for e in events:
        if e["type"] == "task.claimed":
            per_stream[e["stream"]] = per_stream.get(e["stream"], 0) + 1
    assert set(per_stream.values()) == {1} and len(per_stream) == 31
    assert sorted(r["single"] for r in results) == [False, True]  # one race, one winner
