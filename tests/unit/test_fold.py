"""The one fold (orchestrator.fold): the sample run, a run of the REAL agent loop, --at,
unknown types, newer fields, retention, and the JSON shape replay promises."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.definition import load_definition
from agents.loop import AgentSession
from agents.providers.script import ScriptProvider
from eventstore.backends.memory import MemoryStore
from eventstore.base import EventStore
from eventstore.model import NewEvent
from eventstore.retention import RetentionPolicy
from orchestrator.cli.replay import filter_agent, load_run
from orchestrator.fold import SCHEMA, RunState, fold
from orchestrator.render import render
from orchestrator.runs import RunNotFound, list_runs, resolve_run

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "events" / "sample-run.jsonl"

RUN_KEYS = {"id", "status", "started_at", "finished_at", "last_event_at", "duration_ms",
            "last_position", "agents", "config", "recorded_totals", "totals", "complete",
            "resumes", "lead"}
SESSION_KEYS = {"id", "agent", "model", "provider", "status", "task_id", "attempt",
                "parent_session", "children", "dispatched_at", "started_at", "finished_at",
                "duration_ms", "usage", "tokens", "cost_usd", "final_text", "error",
                "error_kind", "budget", "definition_hash", "allowed_tools", "events", "turns",
                "tool_calls_without_turn", "other", "removed_by_retention", "tool_rules",
                "disallowed_tools", "permission_mode", "workspace_diffs", "resumes",
                "workspace", "rerun_of", "forked_from", "role"}
TURN_KEYS = {"turn", "status", "model", "position", "called_at", "responded_at",
             "latency_ms", "usage", "stop_reason", "cost_usd", "retries", "attempts", "text",
             "fingerprint", "tool_calls", "incomplete"}
CALL_KEYS = {"tool_use_id", "tool", "turn", "status", "position", "requested_at",
             "completed_at", "input", "decision", "rule", "reason", "approval", "output",
             "output_shown_truncated", "output_truncated", "output_sha256", "output_chars",
             "is_error", "error_kind", "exit_code", "timed_out", "duration_ms", "files",
             "incomplete"}


def sample_events() -> list[tuple[str, NewEvent]]:
    out = []
    for line in SAMPLE.read_text().splitlines():
        obj = json.loads(line)
        obj.pop("stream")
        out.append((json.loads(line)["stream"], NewEvent(**obj)))
    return out


async def load_sample(store: EventStore) -> None:
    for stream, ev in sample_events():
        await store.append(stream, [ev])


async def test_sample_run_tree() -> None:
    store = MemoryStore()
    await load_sample(store)
    state = await load_run(store, "demo-run-1")
    doc = state.to_dict()
    assert doc["schema"] == SCHEMA
    run = doc["run"]
    assert run["status"] == "completed" and run["complete"] and doc["incomplete"] == []
    assert run["duration_ms"] == 14000.0 and run["agents"] == ["backend-implementer"]
    assert [t["id"] for t in doc["tasks"]] == ["T1"]
    task = doc["tasks"][0]
    assert (task["status"], task["attempts"], task["sessions"]) == ("completed", 1, ["S1"])
    [s] = doc["sessions"]
    assert (s["agent"], s["model"], s["provider"], s["status"], s["task_id"]) == (
        "backend-implementer", "claude-sonnet-4-5", "script", "completed", "T1")
    assert s["usage"] == {"input_tokens": 5210, "output_tokens": 412}
    assert s["cost_usd"] == 0.0218
    [turn] = s["turns"]
    assert (turn["turn"], turn["stop_reason"], turn["latency_ms"]) == (1, "tool_use", 1000.0)
    calls = [(c["tool_use_id"], c["tool"], c["status"], c["decision"])
             for c in turn["tool_calls"]]
    assert calls == [("tu_1", "Read", "ok", "allowed"), ("tu_2", "Bash", "denied", "denied"),
                     ("tu_3", "Bash", "ok", "allowed")]
    assert "not allowed" in turn["tool_calls"][1]["reason"]
    assert turn["tool_calls"][2]["exit_code"] == 0
    assert run["totals"]["tool_calls"] == 3 and run["totals"]["denials"] == 1
    assert run["totals"]["tokens"] == 5622


async def test_at_position_and_time_give_the_earlier_state() -> None:
    store = MemoryStore()
    await load_sample(store)
    early = (await load_run(store, "demo-run-1", at=8)).to_dict()
    assert early["run"]["status"] == "running"
    [s] = early["sessions"]
    assert s["status"] == "running"
    assert [c["tool_use_id"] for c in s["turns"][0]["tool_calls"]] == ["tu_1"]
    at_time = datetime(2026, 11, 23, 10, 0, 9, tzinfo=UTC)  # the denial of tu_2
    mid = (await load_run(store, "demo-run-1", at=at_time)).to_dict()
    calls = mid["sessions"][0]["turns"][0]["tool_calls"]
    assert [c["status"] for c in calls] == ["ok", "denied"]
    # A run that is not over: the pending call is not yet "incomplete".
    assert mid["incomplete"] == []


def _record(n: int, type_: str, stream: str, data: dict[str, Any]) -> Any:
    from eventstore.model import recorded_event

    t = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n)
    return recorded_event(f"id{n}", stream, n, n, type_, data, {}, "agent:x", "R", None, t, t,
                          None, "h")


def test_unknown_types_and_newer_fields_are_tolerated() -> None:
    evs = [
        _record(1, "agent.started", "session-A", {"agent": "x", "future_field": {"a": 1}}),
        _record(2, "thought.recorded", "session-A", {"text": "hmm"}),
        _record(3, "model.called", "session-A", {"turn": 1, "model": "m", "v2": True}),
        _record(4, "model.responded", "session-A", {"turn": 1, "usage": "not-a-dict",
                                                    "content": "plain text"}),
        _record(5, "tool.requested", "session-A", {"tool_use_id": "t1", "tool": "Read",
                                                   "input": {"file_path": "a"}}),
        _record(6, "tool.completed", "session-A", {"tool_use_id": "t1", "tool": "Read",
                                                   "output": ["not", "a", "string"],
                                                   "duration_ms": "fast"}),
        _record(7, "galaxy.exploded", "run-R", {"size": 9}),
        _record(8, "task.dispatched", "run-R", {"no": "task id"}),  # malformed: kept
        _record(9, "agent.finished", "session-A", {"status": "completed"}),
    ]
    state = fold(evs, "R")
    doc = state.to_dict()
    s = doc["sessions"][0]
    assert [o["type"] for o in s["other"]] == ["thought.recorded"]
    assert [o["type"] for o in doc["other"]] == ["galaxy.exploded", "task.dispatched"]
    call = s["turns"][0]["tool_calls"][0]
    assert call["status"] == "ok" and call["output"] == "['not', 'a', 'string']"
    assert s["turns"][0]["text"] == "plain text"
    assert doc["run"]["status"] == "completed"
    for fmt in ("text", "markdown", "html", "json"):
        assert "galaxy.exploded" in render(doc, fmt)


def test_workspace_diff_in_session_or_run_stream_and_definition_fields() -> None:
    patch = "--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-x\n+y\n"
    evs = [
        _record(1, "agent.started", "session-A", {
            "agent": "x", "allowed_tools": ["Read", "Bash"], "permission_mode": "default",
            "tools": ["Read", "Bash(git diff:*)"], "disallowed_tools": ["Write"]}),
        _record(2, "workspace.diff", "session-A", {"patch": patch,
                                                   "files": [{"path": "app.py"}]}),
        _record(3, "workspace.diff", "run-R", {"session_id": "A", "diff": "d" * 50}),
        _record(4, "workspace.diff", "run-R", {"patch": "p"}),  # names no session
        _record(5, "agent.finished", "session-A", {"status": "completed"}),
    ]
    doc = fold(evs, "R").to_dict(max_chars=10)
    [s] = doc["sessions"]
    assert s["tool_rules"] == ["Read", "Bash(git diff:*)"]
    assert s["disallowed_tools"] == ["Write"] and s["permission_mode"] == "default"
    first, second = s["workspace_diffs"]
    assert first["patch"] == patch[:10] and first["patch_shown_truncated"]
    assert first["patch_chars"] == len(patch) and first["files"] == [{"path": "app.py"}]
    assert second["patch"] == "d" * 10 and second["position"] == 3
    assert [d["patch"] for d in doc["workspace_diffs"]] == ["p"]
    assert doc["other"] == [] and s["other"] == []


def test_tool_call_without_outcome_is_incomplete() -> None:
    evs = [
        _record(1, "agent.started", "session-A", {"agent": "x"}),
        _record(2, "model.called", "session-A", {"turn": 1}),
        _record(3, "model.responded", "session-A", {"turn": 1}),
        _record(4, "tool.requested", "session-A", {"turn": 1, "tool_use_id": "t1",
                                                   "tool": "Bash", "input": {}}),
    ]
    state = fold(evs, "R")
    assert state.to_dict()["incomplete"] == []  # still running: pending, not missing
    state.apply(_record(5, "agent.failed", "session-A", {"status": "failed",
                                                         "error": "killed"}))
    doc = state.to_dict()
    [gap] = doc["incomplete"]
    assert gap["where"] == "session-A t1" and "no tool.completed" in gap["reason"]
    assert doc["sessions"][0]["turns"][0]["tool_calls"][0]["status"] == "pending"
    assert not doc["run"]["complete"]


def test_retries_are_counted_on_their_turn() -> None:
    evs = [
        _record(1, "agent.started", "session-A", {"agent": "x"}),
        _record(2, "model.called", "session-A", {"turn": 1, "attempt": 1}),
        _record(3, "model.failed", "session-A", {"turn": 1, "attempt": 1, "error": "429",
                                                 "will_retry": True, "delay_s": 1.0}),
        _record(4, "model.called", "session-A", {"turn": 1, "attempt": 2}),
        _record(5, "model.responded", "session-A", {"turn": 1, "attempt": 2,
                                                    "usage": {"input_tokens": 5}}),
    ]
    doc = fold(evs, "R").to_dict()
    [turn] = doc["sessions"][0]["turns"]
    assert turn["retries"] == 1 and turn["status"] == "responded"
    assert [a["error"] for a in turn["attempts"]] == ["429", None]
    assert doc["run"]["totals"]["retries"] == 1


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / ".claude" / "agents").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "health-app" / "app.py", repo / "app.py")
    shutil.copy(ROOT / "examples" / "agents" / "backend-implementer.md",
                repo / ".claude" / "agents" / "backend-implementer.md")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    return repo


async def run_real_loop(store: EventStore, repo: Path, run_id: str = "run-real",
                        session_id: str = "S-real") -> Any:
    script = yaml.safe_load((ROOT / "examples" / "scripts" / "health-endpoint.yaml")
                            .read_text())
    defn = load_definition(repo / ".claude" / "agents" / "backend-implementer.md")
    return await AgentSession(defn, "Add a /health endpoint and its test",
                              provider=ScriptProvider(turns=script["turns"]), store=store,
                              workspace=repo, run_id=run_id, session_id=session_id,
                              cost_fn=lambda model, usage: 0.001).run()


async def test_real_agent_loop_run_folds_step_for_step(workspace: Path) -> None:
    store = MemoryStore()
    result = await run_real_loop(store, workspace)
    assert result.status == "completed"
    raw = [e async for e in store.read_stream("session-S-real")]
    doc = (await load_run(store, "run-real")).to_dict(max_chars=None)
    [s] = doc["sessions"]
    assert s["status"] == "completed" and s["agent"] == "backend-implementer"
    # every tool call, in order, with its decision, exactly as the events say
    expected = []
    outcome: dict[str, str] = {}
    for e in raw:
        if e.type == "tool.requested":
            expected.append((e.data["turn"], e.data["tool_use_id"], e.data["tool"],
                             e.data["input"]))
        elif e.type in ("tool.completed", "tool.denied"):
            outcome[e.data["tool_use_id"]] = e.type
    got = [(c["turn"], c["tool_use_id"], c["tool"], c["input"])
           for t in s["turns"] for c in t["tool_calls"]]
    assert got == expected and len(got) == 6
    decisions = {c["tool_use_id"]: c["decision"] for t in s["turns"] for c in t["tool_calls"]}
    assert decisions == {k: ("denied" if v == "tool.denied" else "allowed")
                         for k, v in outcome.items()}
    assert list(decisions.values()).count("denied") == 2
    # usage: the sum over turns equals what agent.finished recorded and the session result
    turn_sum: dict[str, int] = {}
    for t in s["turns"]:
        for k, v in t["usage"].items():
            turn_sum[k] = turn_sum.get(k, 0) + v
    assert {k: v for k, v in turn_sum.items() if v} == {k: v for k, v in result.usage.items()
                                                        if v}
    assert s["usage"] == result.usage
    assert len(s["turns"]) == result.turns == 6
    assert s["cost_usd"] == pytest.approx(0.006)
    bash = [c for t in s["turns"] for c in t["tool_calls"]
            if c["tool"] == "Bash" and c["decision"] == "allowed"]
    assert bash[0]["exit_code"] == 0 and "2 passed" in bash[0]["output"]
    files = [f["path"] for t in s["turns"] for c in t["tool_calls"] for f in c["files"]]
    assert files == ["app.py", "tests/test_health.py"]
    assert doc["incomplete"] == [] and doc["run"]["status"] == "completed"
    assert filter_agent(doc, "nobody")["sessions"] == []


async def test_json_shape_is_stable(workspace: Path) -> None:
    store = MemoryStore()
    await run_real_loop(store, workspace)
    doc = (await load_run(store, "run-real")).to_dict()
    assert set(doc) == {"schema", "run", "tasks", "sessions", "other", "incomplete",
                        "workspace_diffs"}
    assert set(doc["run"]) == RUN_KEYS
    for s in doc["sessions"]:
        assert set(s) == SESSION_KEYS
        for t in s["turns"]:
            assert set(t) == TURN_KEYS
            for c in t["tool_calls"]:
                assert set(c) == CALL_KEYS
    json.dumps(doc)  # serialisable as is


async def test_retention_removed_session_is_marked_incomplete(tmp_path: Path) -> None:
    store = MemoryStore()
    old = datetime.now(UTC) - timedelta(days=30)
    r = "run-ret"
    await store.append(f"run-{r}", [NewEvent(type="run.started", data={"tasks": ["T9"]},
                                            actor="orchestrator", correlation_id=r,
                                            occurred_at=old)])
    await store.append(f"run-{r}", [NewEvent(type="task.dispatched", actor="orchestrator",
                                            correlation_id=r, occurred_at=old, data={
                                                "task_id": "T9", "agent": "a",
                                                "session_id": "gone"})])
    await store.append("session-gone", [NewEvent(type="agent.started", data={"agent": "a"},
                                                actor="agent:a", correlation_id=r,
                                                occurred_at=old)])
    await store.append(f"run-{r}", [NewEvent(type="run.finished",
                                            data={"status": "completed"},
                                            actor="orchestrator", correlation_id=r,
                                            occurred_at=old)])
    later = datetime.now(UTC) + timedelta(days=30)  # retention ages by recorded_at
    report = await store.apply_retention(RetentionPolicy(max_age=timedelta(days=7), keep=("run-",)),
                                         dry_run=False, now=later)
    assert [x.stream for x in report.removed] == ["session-gone"]
    doc = (await load_run(store, r)).to_dict()
    assert not doc["run"]["complete"]
    [gap] = doc["incomplete"]
    assert gap["where"] == "session-gone" and "retention" in gap["reason"]
    assert doc["sessions"][0]["removed_by_retention"]
    assert "removed by retention" in render(doc, "text")
    [summary] = await list_runs(store)
    assert summary.to_dict()["incomplete"]


async def test_runs_listing_order_last_and_resolver(workspace: Path) -> None:
    store = MemoryStore()
    await load_sample(store)  # demo-run-1, started 2026-11-23T10:00
    await run_real_loop(store, workspace, run_id="run-real-a", session_id="SA")  # now
    runs = [r.to_dict() for r in await list_runs(store)]
    assert [r["id"] for r in runs] == ["run-real-a", "demo-run-1"]  # newest first
    by_id = {r["id"]: r for r in runs}
    assert by_id["demo-run-1"]["events"] == 15 and by_id["demo-run-1"]["tasks"] == 1
    assert by_id["demo-run-1"]["tokens"] == 5622 and by_id["demo-run-1"]["cost_usd"] == 0.0218
    real = by_id["run-real-a"]
    assert real["status"] == "completed" and real["agents"] == ["backend-implementer"]
    raw = [e async for e in store.read_stream("session-SA")]
    assert real["events"] == len(raw)
    newest = runs[0]["id"]
    assert await resolve_run(store, "last") == newest
    assert await resolve_run(store, None, last=True) == newest
    assert await resolve_run(store, "demo") == "demo-run-1"
    assert await resolve_run(store, "run-real-a") == "run-real-a"
    with pytest.raises(RunNotFound, match="closest: demo-run-1"):
        await resolve_run(store, "demo-run-2")


def test_incremental_apply_equals_batch_fold() -> None:
    evs = [
        _record(1, "agent.started", "session-A", {"agent": "x"}),
        _record(2, "model.called", "session-A", {"turn": 1}),
        _record(3, "model.responded", "session-A", {"turn": 1, "usage": {"input_tokens": 3}}),
        _record(4, "agent.finished", "session-A", {"status": "completed"}),
    ]
    state = RunState("R")
    for e in evs:
        state.apply(e)
    assert state.to_dict() == fold(evs, "R").to_dict()


@pytest.mark.parametrize(("finished", "expected"), [
    ({"cost_usd": None, "cost_usd_priced": 0.0, "unpriced_responses": 3}, None),
    ({"cost_usd": None, "cost_usd_priced": 0.25, "unpriced_responses": 1}, 0.25),
    ({"cost_usd": 0.5, "cost_usd_priced": 0.5, "unpriced_responses": 0}, 0.5),
])
async def test_unpriced_session_cost_is_unknown_not_zero(
        finished: dict[str, Any], expected: float | None) -> None:
    """A session whose model has no price (the script provider, an unknown model) costs
    "unknown", not $0: replay, runs and audit must not claim it was free."""
    store = MemoryStore()
    await store.append("session-s1", [
        NewEvent(type="agent.started", correlation_id="r1", data={"agent": "a"}),
        NewEvent(type="agent.finished", correlation_id="r1",
                 data={"status": "completed", **finished})])
    state = fold([ev async for ev in store.read_stream("session-s1")], "r1")
    doc = state.to_dict()
    assert doc["sessions"][0]["cost_usd"] == expected
    assert doc["run"]["totals"]["cost_usd"] == expected
    text = render(doc, "text")
    assert ("cost n/a" in text.splitlines()[1]) == (expected is None)
