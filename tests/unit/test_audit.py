"""The audit report's own rules (orchestrator.audit), on folded runs and a real in-memory
store: the timeline keeps every denial when it thins out, tools named by rules count as
allowed, and the per-run chain check accounts for retention and missing streams."""

from __future__ import annotations

from typing import Any

from eventstore.backends.memory import MemoryStore
from eventstore.model import NewEvent
from eventstore.verify import verify_streams
from orchestrator.audit import MAX_MARKS, build_audit, run_streams, tool_allowed
from orchestrator.fold import fold
from tests.unit.test_fold import _record


def test_timeline_thins_ordinary_calls_but_keeps_every_denial() -> None:
    evs: list[Any] = [_record(1, "agent.started", "session-A", {"agent": "x"})]
    n = MAX_MARKS + 500
    for i in range(n):
        pos = 2 + 2 * i
        data = {"tool_use_id": f"t{i}", "tool": "Bash", "input": {"command": f"echo {i}"}}
        evs.append(_record(pos, "tool.requested", "session-A", data))
        outcome = "tool.denied" if i % 100 == 0 else "tool.completed"
        evs.append(_record(pos + 1, outcome, "session-A", {**data, "exit_code": 0}))
    denied = len(range(0, n, 100))
    state = fold(evs, "R")
    verified: Any = type("Report", (), {"problems": [], "streams": 1, "events": len(evs)})
    doc = build_audit([(state, verified)], scope={"runs": ["R"], "since": None,
                                                  "until": None})
    tl = doc["timeline"]
    [lane] = tl["lanes"]
    assert (tl["marks_total"], tl["marks_shown"], len(lane["marks"])) == (n, MAX_MARKS,
                                                                          MAX_MARKS)
    assert sum(m["status"] == "denied" for m in lane["marks"]) == denied
    assert [m["t_ms"] for m in lane["marks"]] == sorted(m["t_ms"] for m in lane["marks"])
    assert len(doc["commands"]) == n - (denied)
    assert doc["summary"]["denials"] == denied


def test_tool_allowed_by_name_rule_or_prefix() -> None:
    allowed = ["Read", "Bash(git diff:*)", "mcp__docs__*"]
    assert tool_allowed("Read", allowed) and tool_allowed("Bash", allowed)
    assert tool_allowed("mcp__docs__search", allowed)
    assert not tool_allowed("Write", allowed) and not tool_allowed("Bas", allowed)
    assert not tool_allowed("mcp__other__x", allowed)


async def test_chain_check_of_a_run_accounts_for_retention_and_missing_streams() -> None:
    from datetime import UTC, datetime, timedelta

    from eventstore.retention import RetentionPolicy
    from orchestrator.cli.replay import load_run

    store = MemoryStore()
    old = datetime.now(UTC) - timedelta(days=30)

    def ev(type_: str, data: dict[str, Any]) -> list[NewEvent]:
        return [NewEvent(type=type_, data=data, actor="orchestrator", correlation_id="R",
                         occurred_at=old)]

    await store.append("run-R", ev("run.started", {"tasks": ["T1", "T2"]}))
    for sid in ("old", "never"):
        await store.append("run-R", ev("task.dispatched", {"task_id": "T1", "agent": "a",
                                                           "session_id": sid}))
    await store.append("session-old", ev("agent.started", {"agent": "a"}))
    await store.append("task-T1", ev("task.created", {"title": "t"}))
    await store.append("run-R", ev("run.finished", {"status": "completed"}))
    await store.apply_retention(RetentionPolicy(max_age=timedelta(days=7),
                                                keep=("run-", "task-")), dry_run=False,
                                now=datetime.now(UTC) + timedelta(days=30))
    state = await load_run(store, "R")
    streams = await run_streams(store, state)
    # T2 has no stream of its own (named by run.started only): not checked
    assert streams == ["run-R", "task-T1", "session-old", "session-never"]
    report = await verify_streams(store, streams)
    assert report.removed_streams_accounted == 1 and report.events == 5
    [problem] = report.problems
    assert (problem.kind, problem.stream) == ("missing-stream", "session-never")
    doc = build_audit([(state, report)], scope={"runs": ["R"], "since": None, "until": None})
    assert doc["integrity"]["verdict"] == "broken"
    assert [r["stream"] for r in doc["integrity"]["removed_streams"]] == ["session-old"]
