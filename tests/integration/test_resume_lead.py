"""`orchestrail resume` of a run led by a lead agent (`run --lead --review`) after a real
SIGKILL: real processes, a real SQLite file, real git worktrees, the script provider
standing in for the model.

The lead's session is resumed at session level (recorded turns and completed Agent calls
served from the trail); an Agent call that was running at the kill is continued: the task
it started is finished once (its child session resumed in its worktree, or settled from
the trail, or its review asked again), and the task's result becomes the call's result.
Checked after each resume: every task completed exactly once, one request and one outcome
per tool_use_id (nothing executed twice, the lead never asked again for a recorded turn),
each trace line in a task's worktree at most once (exactly once when the trail says the
call completed), and `orchestrail verify` passes. Kill points: seeded
(``RESUME_SEED=N`` to try others), as numbers of stored events.
"""

from __future__ import annotations

import json
import random
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ORCHESTRAIL, ROOT
from tests.integration.test_resume_cli import (
    SEED,
    all_events,
    check_trace,
    check_trail,
    cli,
    count_events,
    env_for,
    kill_at,
    project,
    script,
)

LEAD = (ROOT / ".claude" / "agents" / "orchestrator.md").read_text()
REVIEWER = ("---\nname: reviewer\ndescription: Reviews.\ntools: Read, Bash(sleep:*)\n---\n"
            "Review the work.\n")


def led_project(root: Path, tasks: int, steps: int) -> Path:
    import subprocess

    p = project(root, steps, 0.01, tasks=tasks)
    agents = p / ".claude" / "agents"
    (agents / "orchestrator.md").write_text(LEAD)
    (agents / "reviewer.md").write_text(REVIEWER)
    lead = [{"text": f"dispatching t{i:02d}", "tool_calls": [{"name": "Agent", "input": {
        "subagent_type": "tracer", "description": f"t{i:02d}: trace it",
        "prompt": f"Trace the steps of task t{i:02d}."}}]} for i in range(1, tasks + 1)]
    lead.append({"text": "All tasks are done."})
    review = [{"tool_calls": [{"name": "Bash", "input": {"command": "sleep 0.01"}}]},
              {"text": "The trace is there.\nVERDICT: accept - traced"}]
    (p / "script.yaml").write_text(yaml.safe_dump({"default": script(steps, 0.01)["turns"],
                                                   "tasks": {"_lead": lead,
                                                             "_review": review}}))
    subprocess.run(["git", "-C", str(p), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(p), "-c", "user.name=t", "-c",
                    "user.email=t@example.com", "commit", "-qm", "lead"], check=True)
    return p


def test_lead_run_with_reviews_killed_and_resumed(tmp_path: Path) -> None:
    rng = random.Random(SEED + 2)
    steps, tasks = 2, 20
    ids = [f"t{i:02d}" for i in range(1, tasks + 1)]
    # per task about 30 events: the lead's turn and call, claim, dispatch, the session,
    # diff, review.requested, the reviewer's session, review.completed, completion
    total_estimate = tasks * 28
    for k in range(3):
        root = tmp_path / f"r{k}"
        p = led_project(root, tasks, steps)
        db = p / ".orchestrail" / "events.db"
        assert cli(p, db, "task", "import", "tasks.yaml").returncode == 0
        n = count_events(db) + rng.randint(5, total_estimate - 40)
        kill_at([ORCHESTRAIL, "run", "--lead", "--review", "--script", "script.yaml",
                 "--run-id", f"led{k}", "-q"], p, db, n)
        before = all_events(p, db)
        assert len([e for e in before if e["type"] == "task.completed"]) < tasks
        plan = json.loads(cli(p, db, "resume", f"led{k}", "--dry-run", "--json").stdout)
        lead_plan = [s for s in plan["sessions"] if "lead" in s["reason"]]
        assert [s["action"] for s in lead_plan] in (["resume"], []), plan
        out = cli(p, db, "resume", f"led{k}", "--json", "-q")
        assert out.returncode == 0, (n, out.stdout, out.stderr)
        resumed_ev = [e for e in all_events(p, db) if e["type"] == "run.resumed"][-1]["data"]
        assert resumed_ev["dispatch"] == [] and resumed_ev["lead"]["action"] == "resume"
        doc = json.loads(out.stdout)
        assert doc["status"] == "completed", doc
        assert sorted(doc["tasks"]["completed"]) == ids
        evs = all_events(p, db)
        done = Counter(e["stream"] for e in evs if e["type"] == "task.completed")
        assert done == Counter({f"task-{t}": 1 for t in ids}), done
        outcomes = check_trail(evs)  # once per tool_use_id, once per model turn
        lead_sid = next(e["data"]["session_id"] for e in evs if e["type"] == "lead.started")
        lead_stream = f"session-{lead_sid}"
        lead_calls = [d for (stream, _), d in outcomes.items() if stream == lead_stream]
        assert len(lead_calls) == tasks and not any(d["is_error"] for d in lead_calls)
        # the Agent call running at the kill was continued (its task finished once, its
        # result served as the call's outcome), not recorded as interrupted
        was_open = {e["data"]["tool_use_id"] for e in before if e["type"] == "tool.requested"
                    and e["stream"] == lead_stream} - {
            e["data"]["tool_use_id"] for e in before if e["type"] == "tool.completed"
            and e["stream"] == lead_stream}
        for use in was_open:
            assert outcomes[(lead_stream, use)].get("continued") is True, use
        resumed = {e["stream"] for e in evs if e["type"] == "agent.resumed"}
        print(f"kill {k} at event {n}: lead call open {sorted(was_open)}, "
              f"{len(resumed)} session(s) resumed")
        assert [e["type"] for e in evs if e["stream"] == f"session-{lead_sid}"
                ][-1] == "agent.finished"
        # each task dispatched by exactly one Agent call of the lead
        dispatched = [e["data"] for e in evs if e["type"] == "task.dispatched"]
        by_call = {(d["task_id"], d["tool_use_id"]) for d in dispatched}
        assert sorted(t for t, _ in by_call) == ids
        task_of = {d["session_id"]: d["task_id"] for d in dispatched}
        sessions: dict[str, list[dict[str, Any]]] = {}
        for (stream, _), data in outcomes.items():
            sessions.setdefault(stream, []).append(data)
        finished = [e for e in evs if e["type"] == "agent.finished"
                    and e["stream"][len("session-"):] in task_of]
        assert sorted(task_of[e["stream"][len("session-"):]] for e in finished) == ids
        for e in finished:
            ws = p / ".orchestrail" / "worktrees" / f"led{k}" / task_of[e["stream"][8:]]
            check_trace(ws / "trace.txt", sessions[e["stream"]], steps)
        verdicts = Counter(e["data"]["task_id"] for e in evs
                           if e["type"] == "review.completed"
                           and e["data"]["verdict"] == "accept")
        assert verdicts == Counter({t: 1 for t in ids}), verdicts
        kinds = [e["type"] for e in evs]
        assert kinds.count("run.resumed") == 1 and kinds.count("lead.started") == 1
        assert cli(p, db, "verify").returncode == 0
        replay = json.loads(cli(p, db, "replay", f"led{k}", "--format", "json").stdout)
        assert replay["run"]["status"] == "completed" and replay["incomplete"] == []


def test_the_demo_story_led_and_reviewed_killed_and_resumed(tmp_path: Path) -> None:
    """The demo's story 4.2 in the seed's orchestrator mode (examples/scripts/story-4.2.yaml,
    `_lead:` and `_review:`), SIGKILLed at seeded points and resumed: each task completed
    at most once, nothing run twice, the trail whole and verified; and all seven completed,
    in the lead's order and each accepted by one review, unless the kill interrupted a
    subagent's `Bash` or `Write` call: then (at most once) it is not run again, the
    subagent is told, and the story's script, which expects the tool's real output, has no
    turn for that answer, so that task fails and the lead stops (what a model would
    handle, a script cannot)."""
    from tests.integration.test_run_lead_review import story_project

    rng = random.Random(SEED + 3)
    story_script = str(ROOT / "examples" / "scripts" / "story-4.2.yaml")
    order = [f"story-4-2.t{i}" for i in range(1, 7)] + ["story-4-2.review"]
    for k in range(2):
        p = story_project(tmp_path / f"s{k}")
        db = p / ".orchestrail" / "events.db"
        assert db.exists()
        n = count_events(db) + rng.randint(5, 160)
        kill_at([ORCHESTRAIL, "run", "--lead", "--review", "--script", story_script,
                 "--run-id", f"story{k}", "-q"], p, db, n, deadline=240)
        out = cli(p, db, "resume", f"story{k}", "--json", "-q", timeout=300)
        doc = json.loads(out.stdout)
        evs = all_events(p, db)
        outcomes = check_trail(evs)
        interrupted = [d for d in outcomes.values() if d.get("error_kind") == "interrupted"]
        completed = [e["stream"][5:] for e in evs if e["type"] == "task.completed"]
        assert len(completed) == len(set(completed)) and completed == order[:len(completed)]
        print(f"kill {k} at event {n}: {len(interrupted)} call(s) interrupted, "
              f"{len(completed)} task(s) completed")
        # one kill stops at most one running call; never the lead's Agent call (continued)
        assert len(interrupted) <= 1 and all(d["tool"] in ("Bash", "Write")
                                             for d in interrupted), interrupted
        if doc["status"] == "completed":
            assert out.returncode == 0 and completed == order
            accepted = [e["data"]["task_id"] for e in evs if e["type"] == "review.completed"
                        and e["data"]["verdict"] == "accept"]
            assert sorted(accepted) == sorted(order)
        else:  # the interrupted call's task failed for lack of a script turn
            assert interrupted and out.returncode == 1, (n, out.stdout, out.stderr[-3000:])
            [failed] = doc["tasks"]["failed"]
            assert "no script turn" in doc["tasks"]["failed"][failed]
        assert cli(p, db, "verify").returncode == 0
        replay = json.loads(cli(p, db, "replay", f"story{k}", "--format", "json").stdout)
        assert replay["run"]["status"] == doc["status"] and replay["incomplete"] == []


def test_a_delegation_two_deep_killed_in_the_grandchild_and_resumed(tmp_path: Path) -> None:
    """lead -> task a (a delegator) -> an ad-hoc task (tracer, depth 2), killed while the
    grandchild's Bash runs. Resume continues both Agent calls in flight (the lead's and
    the child's) and resumes the grandchild: the Bash is interrupted, not run again; each
    task completes once; no call is dispatched a second time."""
    import sqlite3
    import subprocess
    import time

    p = project(tmp_path, 1, 0.0, tasks=1)
    agents = p / ".claude" / "agents"
    (agents / "orchestrator.md").write_text(LEAD)
    (agents / "delegator.md").write_text("---\nname: delegator\ndescription: Delegates."
                                         "\ntools: Agent, Read\n---\nYou delegate.\n")
    (p / "tasks.yaml").write_text("tasks:\n  - {id: a, title: A, agent: delegator}\n")
    (p / "script.yaml").write_text(yaml.safe_dump({"tasks": {
        "_lead": [{"tool_calls": [{"name": "Agent", "input": {
            "subagent_type": "delegator", "description": "a: go", "prompt": "Go."}}]},
                  "lead done"],
        "a": [{"tool_calls": [{"name": "Agent", "input": {
            "subagent_type": "tracer", "description": "help me", "prompt": "Trace."}}]},
              "a done with help"]},
        "default": [{"tool_calls": [{"name": "Bash", "input": {
            "command": "echo deep >> trace.txt && sleep 30"}}]}, "deep done"]}))
    subprocess.run(["git", "-C", str(p), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(p), "-c", "user.name=t", "-c",
                    "user.email=t@example.com", "commit", "-qm", "deep"], check=True)
    db = p / ".orchestrail" / "events.db"
    assert cli(p, db, "task", "import", "tasks.yaml").returncode == 0
    proc = subprocess.Popen([ORCHESTRAIL, "run", "--lead", "--script", "script.yaml",
                             "--run-id", "deep", "-q"], cwd=p, env=env_for(db),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trace = p / ".orchestrail" / "worktrees" / "deep" / "adhoc-deep-1" / "trace.txt"
    try:
        t0 = time.monotonic()
        while True:  # kill while the grandchild's Bash sleeps (its echo done, not before:
            # tool.requested is recorded before the command starts)
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
                n = con.execute("SELECT count(*) FROM events WHERE type = 'tool.requested' "
                                "AND actor = 'agent:tracer'").fetchone()[0]
            if n and trace.exists():
                break
            assert proc.poll() is None and time.monotonic() - t0 < 60
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    out = cli(p, db, "resume", "deep", "--json", "-q")
    assert out.returncode == 0, (out.stdout, out.stderr)
    doc = json.loads(out.stdout)
    adhoc = "adhoc-deep-1"
    assert sorted(doc["tasks"]["completed"]) == ["a", adhoc]
    evs = all_events(p, db)
    outcomes = check_trail(evs)
    assert Counter(e["stream"] for e in evs if e["type"] == "task.completed") == Counter(
        {"task-a": 1, f"task-{adhoc}": 1})
    dispatched = [e["data"] for e in evs if e["type"] == "task.dispatched"]
    assert [(d["task_id"], d["depth"]) for d in dispatched] == [("a", 1), (adhoc, 2)]
    agent_calls = [d for d in outcomes.values() if d["tool"] == "Agent"]
    assert len(agent_calls) == 2 and all(d.get("continued") is True and not d["is_error"]
                                         for d in agent_calls)
    [bash] = [d for d in outcomes.values() if d["tool"] == "Bash"]
    assert bash["error_kind"] == "interrupted"
    resumed = {e["stream"] for e in evs if e["type"] == "agent.resumed"}
    assert len(resumed) == 3  # the lead, the child, the grandchild
    assert trace.read_text() == "deep\n"  # ran once, not again
    assert cli(p, db, "verify").returncode == 0
    replay = json.loads(cli(p, db, "replay", "deep", "--format", "json").stdout)
    assert replay["run"]["status"] == "completed" and replay["incomplete"] == []


def test_ctrl_c_in_a_led_run_then_resume_continues_the_call(tmp_path: Path) -> None:
    """Ctrl-C releases the task the lead was waiting for and records no outcome for the
    lead's Agent call (it was stopped, not ended): `resume` continues that call like one a
    crash left running (the task's cancelled session resumed), so no task is skipped."""
    import subprocess
    import time

    p = led_project(tmp_path, 4, 6)
    db = p / ".orchestrail" / "events.db"
    assert cli(p, db, "task", "import", "tasks.yaml").returncode == 0
    proc = subprocess.Popen([ORCHESTRAIL, "run", "--lead", "--review", "--script",
                             "script.yaml", "--run-id", "cc", "-q"], cwd=p, env=env_for(db),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        start = count_events(db)
        while count_events(db) < start + 60:  # inside the second or third task
            assert proc.poll() is None
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    before = all_events(p, db)
    assert [e for e in before if e["type"] == "run.finished"][-1]["data"]["status"] \
        == "cancelled"
    out = cli(p, db, "resume", "cc", "--json", "-q")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["status"] == "completed" and sorted(doc["tasks"]["completed"]) == [
        "t01", "t02", "t03", "t04"]
    evs = all_events(p, db)
    outcomes = check_trail(evs)
    lead_sid = next(e["data"]["session_id"] for e in evs if e["type"] == "lead.started")
    calls = [d for (stream, _), d in outcomes.items() if stream == f"session-{lead_sid}"]
    assert len(calls) == 4 and not any(d["is_error"] for d in calls)
    assert sum(d.get("continued") is True for d in calls) == 1
    assert Counter(e["stream"] for e in evs if e["type"] == "task.completed") == Counter(
        {f"task-t0{i}": 1 for i in range(1, 5)})
    assert cli(p, db, "verify").returncode == 0
