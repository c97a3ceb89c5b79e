"""`rerun` and `diff` of runs whose sessions delegate through the Agent tool, as a user runs
them: `orchestrail run --lead --review` recorded in a real git repository and SQLite file
(script provider), then executed again with tools for real.

Asserted: the rerun has the recorded structure (lead.started -> the lead's session ->
tool.requested(Agent) -> task.dispatched caused by it -> child session with
parent_session and rerun_of -> review.requested -> reviewer -> review.completed); an
unchanged run reruns without divergence and `diff` says the runs are the same; a file the
first child's tests depend on, changed, stops the rerun at that child's pytest call and
the lead is reported as stopped by it; a subagent that delegates further (depth 2) reruns
its own child through its own Agent call.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from tests.conftest import ROOT
from tests.integration.test_rerun_cli import scratch_in_tmp  # noqa: F401 (autouse)
from tests.integration.test_run_cli import cli, events, of
from tests.integration.test_run_lead_review import (
    DEEP_SCRIPT,
    DEEP_TASKS,
    DELEGATOR,
    LEAD_AND_REVIEW,
    LEAD_ERRORS,
    project,
    run,
    story_project,
)

SCRIPT = ROOT / "examples" / "scripts" / "story-4.2.yaml"


def rerun(p: Path, *args: str, code: int) -> dict[str, Any]:
    out = cli(p, "rerun", *args, "--json", timeout=300)
    assert out.returncode == code, (out.stdout[-3000:], out.stderr[-3000:])
    return dict(json.loads(out.stdout))


def test_lead_run_with_reviews_reruns_the_same_and_diverges_in_the_child(
        tmp_path: Path) -> None:
    p = story_project(tmp_path)
    out = cli(p, "run", "--lead", "--review", "--script", str(SCRIPT), "--run-id", "led",
              "--json", timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]

    # 1. unchanged: every session again, no divergence, the recorded structure
    rep = rerun(p, "led", "--run-id", "led-again", code=0)
    assert rep["status"] == "same" and rep["divergence"] is None, rep["divergence"]
    parts = rep["sessions"]
    assert [x["agent"] for x in parts[:3]] == ["orchestrator", "backend-implementer",
                                                "reviewer"]
    assert len(parts) == 15 and all(x["status"] == "completed" for x in parts)
    assert rep["reviews_rerun"] == 7 and not rep["notes"], [
        (n["agent"], n["tool"], n["input"], n["output_diff"]) for n in rep["notes"]]
    rec_lead = parts[0]["recorded_session"]
    assert parts[0]["via"] is None
    assert parts[1]["via"] == {"kind": "agent_call", "caller": rec_lead,
                               "tool_use_id": "toolu_1_1_1", "depth": 1,
                               "task_id": "story-4-2.t1", "attempt": 1}
    assert parts[2]["via"]["kind"] == "review"
    assert parts[2]["via"]["of"] == parts[1]["recorded_session"]
    evs = events(p)
    old = [e for e in evs if e["correlation_id"] == "led"]
    new = [e for e in evs if e["correlation_id"] == "led-again"]
    lead_sid = of(new, "lead.started")[0]["data"]["session_id"]
    assert lead_sid == parts[0]["session"]
    lead_calls = [e for e in of(new, "tool.requested")
                  if e["stream"] == f"session-{lead_sid}" and e["data"]["tool"] == "Agent"]
    dispatched = of(new, "task.dispatched")
    assert [d["causation_id"] for d in dispatched] == [c["id"] for c in lead_calls]
    assert [d["data"]["task_id"] for d in dispatched] == [
        d["data"]["task_id"] for d in of(old, "task.dispatched")]
    for d in dispatched:
        assert d["data"]["parent_session"] == lead_sid
        start = next(e for e in new if e["stream"] == f"session-{d['data']['session_id']}")
        assert start["causation_id"] == d["id"]
        assert start["data"]["parent_session"] == lead_sid and start["data"]["depth"] == 1
        assert start["data"]["rerun_of"]["run_id"] == "led"
    verdicts = of(new, "review.completed")
    assert [v["data"]["verdict"] for v in verdicts] == ["accept"] * 7
    assert len(of(new, "task.completed")) == 7
    # the lead's Agent results name the new children, not the recorded ones
    results = [e["data"]["output"] for e in of(new, "tool.completed")
               if e["stream"] == f"session-{lead_sid}"]
    assert dispatched[0]["data"]["session_id"] in results[0]
    # replay shows the tree; diff pairs the sessions and finds nothing
    tree = json.loads(cli(p, "replay", "led-again", "--json").stdout)
    lead_view = next(s for s in tree["sessions"] if s["id"] == lead_sid)
    assert len(lead_view["children"]) == 7
    same = cli(p, "diff", "led", "led-again")
    assert same.returncode == 0 and "are the same: 15 session(s)" in same.stdout, same.stdout

    # 2. a file the first child's tests import, changed: its pytest call diverges, the
    # lead stops there (and says why), the scratch workspace is kept
    (p / "store").mkdir()
    (p / "store" / "__init__.py").write_text("raise ImportError('store was moved')\n")
    rep = rerun(p, "led", "--workspace", str(p), "--run-id", "led-broken", code=1)
    div = rep["divergence"]
    t1 = next(e["data"]["session_id"] for e in of(old, "task.dispatched")
              if e["data"]["task_id"] == "story-4-2.t1")
    assert div["session"] == t1 and div["kind"] == "tool_result"
    assert div["tool"] == "Bash" and "tests/test_interface.py" in div["input"]["command"]
    assert (div["recorded"]["exit_code"], div["now"]["status"]) == (0, "error")
    assert div["now"]["exit_code"] != 0 and "store was moved" in div["now"]["output"]
    lead_part = rep["sessions"][0]
    assert lead_part["agent"] == "orchestrator" and lead_part["divergence"]["kind"] == "child"
    assert lead_part["divergence"]["child"] == t1
    assert [x["agent"] for x in rep["sessions"]] == ["orchestrator", "backend-implementer"]
    assert Path(rep["sessions"][1]["workspace"]["workspace"]).is_dir()  # kept
    text = cli(p, "rerun", "led", "--workspace", str(p), timeout=300)
    assert text.returncode == 1
    assert f"DIVERGENCE in session {t1} (backend-implementer), turn 2" in text.stdout
    assert "python -m pytest -q tests/test_interface.py" in text.stdout
    assert "[Agent call toolu_1_1_1 of " in text.stdout
    differ = cli(p, "diff", "led", "led-broken")
    assert differ.returncode == 1 and "only in a" in differ.stdout
    assert cli(p, "verify").returncode == 0


def test_a_subagent_that_delegates_further_reruns_its_own_child(tmp_path: Path) -> None:
    p = project(tmp_path, DEEP_SCRIPT, tasks=DEEP_TASKS, more_agents={"delegator": DELEGATOR})
    run(p, "--lead", "--run-id", "deep")
    rep = rerun(p, "deep", "--run-id", "deep-again", code=0)
    assert [x["status"] for x in rep["sessions"]] == ["completed"] * 3
    evs = events(p)
    new = [e for e in evs if e["correlation_id"] == "deep-again"]
    d = of(new, "task.dispatched")
    assert [x["data"]["depth"] for x in d] == [1, 2]
    child, grandchild = (x["data"]["session_id"] for x in d)
    assert d[1]["data"]["parent_session"] == child
    child_call = next(e for e in of(new, "tool.requested")
                      if e["stream"] == f"session-{child}" and e["data"]["tool"] == "Agent")
    assert d[1]["causation_id"] == child_call["id"]  # by cause: the child's own call
    # the grandchild's Agent call is refused again at the depth limit, as recorded
    refused = [e["data"] for e in of(new, "tool.completed")
               if e["stream"] == f"session-{grandchild}"]
    assert refused[0]["is_error"] and "depth limit reached (2)" in refused[0]["output"]
    assert rep["sessions"][2]["tool_calls_compared"] == 1
    same = cli(p, "diff", "deep", "deep-again")
    assert same.returncode == 0, same.stdout
    # a fork of a delegating run is refused (bad input, nothing written)
    (p / "live.yaml").write_text("turns: [done]\n")
    fork = cli(p, "rerun", "deep", "--live-from", "2", "--provider", "script", "--script",
               "live.yaml")
    assert fork.returncode == 2 and "delegated to subagents" in fork.stderr


def test_a_retried_attempt_and_its_reviews_rerun_inside_the_same_agent_call(
        tmp_path: Path) -> None:
    """Task a: attempt 1 rejected by the reviewer, attempt 2 accepted, both inside the
    lead's first Agent call; both attempts and both reviews run again, in order."""
    p = project(tmp_path, LEAD_AND_REVIEW)
    run(p, "--lead", "--review", "--run-id", "retried")
    rep = rerun(p, "retried", "--run-id", "retried-again", code=0)
    assert [x["agent"] for x in rep["sessions"]] == [
        "orchestrator", "tester", "reviewer", "tester", "reviewer", "tester", "reviewer"]
    evs = events(p)
    new = [e for e in evs if e["correlation_id"] == "retried-again"]
    d = of(new, "task.dispatched")
    assert [(x["data"]["task_id"], x["data"]["attempt"]) for x in d] == [
        ("a", 1), ("a", 2), ("b", 1)]
    assert d[0]["causation_id"] == d[1]["causation_id"]  # one Agent call, two attempts
    assert [r["data"]["verdict"] for r in of(new, "review.completed")] == [
        "reject", "accept", "accept"]
    assert cli(p, "diff", "retried", "retried-again").returncode == 0

    # the recording says b's subagent answered otherwise (its agent.finished edited in
    # SQLite): the rerun's answer differs -> a divergence at the lead's level, naming the
    # lead's Agent call and the child
    b_child = d[2]["data"]["rerun_of"]["session_id"]
    db = sqlite3.connect(p / ".orchestrail" / "events.db")
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='trigger'"):
        db.execute(f'DROP TRIGGER "{name}"')
    changed = db.execute("UPDATE events SET data = replace(data, 'wrote b.txt', 'wrote c.txt')"
                         " WHERE type = 'agent.finished' AND stream = ?",
                         (f"session-{b_child}",)).rowcount
    db.commit()
    db.close()
    assert changed == 1
    rep = rerun(p, "retried", code=1)
    div = rep["divergence"]
    lead = next(e["data"]["session_id"] for e in of(evs, "lead.started")
                if e["correlation_id"] == "retried")
    assert div["kind"] == "child_result" and div["session"] == lead
    assert div["child_session"] == b_child and div["tool"] == "Agent"
    assert (div["recorded"], div["now"]) == ("wrote c.txt", "wrote b.txt")
    assert div["turn"] == 2


def test_refused_agent_calls_and_an_adhoc_task_rerun_as_recorded(tmp_path: Path) -> None:
    """The lead's mistakes (a task not ready, the wrong subagent) were tool errors with no
    dispatch: they are errors again; the ad-hoc task's child runs again; the run ends
    failed as recorded (a and b never done), and diff finds nothing else."""
    p = project(tmp_path, LEAD_ERRORS)
    run(p, "--lead", "--run-id", "mistakes", code=1)
    rep = rerun(p, "mistakes", "--run-id", "mistakes-again", code=0)
    assert [x["agent"] for x in rep["sessions"]] == ["orchestrator", "tester"]
    new = [e for e in events(p) if e["correlation_id"] == "mistakes-again"]
    lead = rep["sessions"][0]["session"]
    results = [e["data"] for e in of(new, "tool.completed")
               if e["stream"] == f"session-{lead}"]
    assert [r["is_error"] for r in results] == [True, True, False]
    assert "task b is not ready: it waits for a" in results[0]["output"]
    assert len(of(new, "task.dispatched")) == 1
    assert of(new, "run.finished")[0]["data"]["status"] == "failed"
    same = cli(p, "diff", "mistakes", "mistakes-again")
    assert same.returncode == 0, same.stdout
