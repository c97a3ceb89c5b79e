"""The audit report: what a reviewer needs to sign off one run (or every run in a window).

It is built from the same fold as ``replay`` (``orchestrator.fold.RunState``), so the two
cannot disagree, plus a chain check of the run's streams (``eventstore.verify``). The
result is one JSON document (``SCHEMA``, described by docs/audit.schema.json) that every
audit renderer (Markdown, HTML) takes as its only input.

Sizes are bounded on purpose: a report of a 100,000-event run must open in a browser, so
inputs, outputs, patches and texts are cut (and marked as cut, with their full size and
sha256 where the trail recorded one) and the timeline keeps every denial and error but
thins out the ordinary tool calls past ``MAX_MARKS``.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from eventstore.canonical import format_ts
from orchestrator.fold import USAGE_KEYS, _add_usage, diff_dict, is_known_type, total_tokens

if TYPE_CHECKING:
    from eventstore.base import EventStore
    from eventstore.verify import VerifyReport
    from orchestrator.fold import RunState, Session, ToolCall

SCHEMA = "orchestrail.audit/1"
#: characters kept of a tool input, a command's output, an error, a final text
CAP = 300
#: characters kept of a tool input in an agent's activity list
ACTIVITY_CAP = 160
#: characters kept of one workspace patch
PATCH_CAP = 20_000
#: tool-call marks on the timeline; denials and errors are always kept
MAX_MARKS = 4000


def _ts(value: datetime | None) -> str | None:
    return format_ts(value) if value is not None else None


def _cut(value: Any, limit: int = CAP) -> str | None:
    """A value as one string of at most ``limit`` characters (``…`` and the size if cut)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                           default=str)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} chars)"


def _ms(a: datetime | None, b: datetime | None) -> float | None:
    if a is None or b is None:
        return None
    return round((b - a).total_seconds() * 1000, 3)


async def load_audit(store: EventStore, run_ids: list[str], *,
                     scope: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fold each run, check its streams' chains, and build the report document."""
    from eventstore.verify import verify_streams
    from orchestrator.cli.replay import gc_paused, load_run

    runs: list[tuple[RunState, VerifyReport]] = []
    with gc_paused():
        for run_id in run_ids:
            state = await load_run(store, run_id)
            report = await verify_streams(store, await run_streams(store, state))
            runs.append((state, report))
        return build_audit(runs, scope=scope or {"runs": run_ids})


async def run_streams(store: EventStore, state: RunState) -> list[str]:
    """The streams a run wrote (or must have): run, tasks, sessions, and removed ones.

    A task's own stream is checked when it exists (a task can be named by the run stream
    alone); a session the run dispatched must exist once the run is over, or be accounted
    for by retention, else its absence is an integrity problem.
    """
    out: list[str] = []
    if state.has_run_stream or f"run-{state.run_id}" in state.removed:
        out.append(f"run-{state.run_id}")
    finished = state.finished_at is not None
    for t in state.tasks.values():
        stream = f"task-{t.id}"
        if stream in state.removed or await store.stream_version(stream) is not None:
            out.append(stream)
    for s in state.sessions.values():
        stream = f"session-{s.id}"
        if s.seen or stream in state.removed or finished:
            out.append(stream)
    return out


def build_audit(runs: list[tuple[RunState, VerifyReport]], *,
                scope: dict[str, Any]) -> dict[str, Any]:
    """The report document (``SCHEMA``) of already folded and verified runs."""
    doc: dict[str, Any] = {
        "schema": SCHEMA, "generated_at": format_ts(datetime.now(UTC)), "scope": scope,
        "runs": [], "agents": [], "decisions": [], "files": [], "diffs": [],
        "commands": [], "errors": [], "unknown_types": [], "incomplete": [],
    }
    lanes: list[dict[str, Any]] = []
    marks: list[tuple[int, dict[str, Any]]] = []  # (lane index, mark)
    by_agent: dict[str, dict[str, Any]] = {}
    by_model: dict[str, dict[str, Any]] = {}
    for state, report in runs:
        doc["runs"].append(_run_entry(state, report))
        for gap in state.incomplete():
            doc["incomplete"].append({"run": state.run_id, **gap})
        unknown: Counter[str] = Counter(
            o["type"] for o in state.other if not is_known_type(o["type"]))
        for s in state.sessions.values():
            unknown.update(o["type"] for o in s.other if not is_known_type(o["type"]))
            doc["agents"].append(_agent_entry(state, s))
            _session_rows(doc, state, s)
            _usage_rows(by_agent, by_model, s)
            lanes.append(_lane(state, s))
            for tc in s.tool_calls.values():
                at = tc.requested_at or tc.completed_at
                if at is not None:
                    marks.append((len(lanes) - 1, _mark(tc, at)))
        for t in state.tasks.values():
            if t.status == "failed" or t.error:
                doc["errors"].append({
                    "run": state.run_id, "session": None, "agent": t.agent,
                    "where": f"task {t.id}", "kind": "task.failed",
                    "message": _cut(t.error) or "failed", "at": _ts(t.finished_at),
                    "position": None})
        for diff in state.diffs:
            doc["diffs"].append({"run": state.run_id, "session": None, "agent": None,
                                 **diff_dict(diff, PATCH_CAP)})
        for type_, n in sorted(unknown.items()):
            doc["unknown_types"].append({"run": state.run_id, "type": type_, "events": n})
        if unknown:
            doc["incomplete"].append({
                "run": state.run_id, "where": "events",
                "reason": f"{sum(unknown.values())} event(s) of types this version does not "
                          f"know: {', '.join(sorted(unknown))} (listed, not interpreted)"})
    doc["usage"] = {"by_agent": sorted(by_agent.values(), key=lambda r: r["agent"]),
                    "by_model": sorted(by_model.values(), key=lambda r: r["model"])}
    doc["timeline"] = _timeline(lanes, marks)
    doc["integrity"] = _integrity(doc["runs"])
    doc["summary"] = _summary(doc)
    doc["complete"] = not doc["incomplete"]
    return doc


def _run_entry(state: RunState, report: VerifyReport) -> dict[str, Any]:
    totals = state.totals()
    started = state.started_at or state.first_at
    status = state.derived_status()
    ended = state.finished_at or (state.last_at if status != "running" else None)
    gaps = state.incomplete()
    return {
        "id": state.run_id, "status": status, "started_at": _ts(started),
        "finished_at": _ts(ended), "duration_ms": _ms(started, ended),
        "agents": state.agents(),
        "tasks": [{"id": t.id, "title": t.title, "agent": t.agent, "status": t.status,
                   "attempts": t.attempts} for t in state.tasks.values()],
        "sessions": len(state.sessions), "events": state.events,
        "tool_calls": totals["tool_calls"], "denials": totals["denials"],
        "tool_errors": totals["tool_errors"], "usage": totals["usage"],
        "tokens": totals["tokens"], "cost_usd": totals["cost_usd"],
        "git": {k: state.config.get(k) for k in ("git_commit", "git_status", "cwd")
                if state.config.get(k) is not None},
        "complete": not gaps,
        "integrity": _run_integrity(state, report),
    }


def _run_integrity(state: RunState, report: VerifyReport) -> dict[str, Any]:
    removed = [dict(v) for v in state.removed.values() if v["stream"] in report_streams(state)]
    problems = [p.model_dump() for p in report.problems]
    verdict = "broken" if problems else ("intact-with-retention" if removed else "intact")
    return {"verdict": verdict, "ok": not problems, "streams_checked": report.streams,
            "events_checked": report.events, "removed_streams": removed,
            "problems": problems}


def report_streams(state: RunState) -> set[str]:
    """Every stream name the run could own (to pick its retention records)."""
    return {f"run-{state.run_id}", *(f"task-{t}" for t in state.tasks),
            *(f"session-{s}" for s in state.sessions)}


def _integrity(runs: list[dict[str, Any]]) -> dict[str, Any]:
    verdicts = [r["integrity"]["verdict"] for r in runs]
    verdict = ("broken" if "broken" in verdicts else
               "intact-with-retention" if "intact-with-retention" in verdicts else
               "intact" if verdicts else "nothing-checked")
    problems = [{"run": r["id"], **p} for r in runs for p in r["integrity"]["problems"]]
    return {"verdict": verdict, "ok": not problems,
            "streams_checked": sum(r["integrity"]["streams_checked"] for r in runs),
            "events_checked": sum(r["integrity"]["events_checked"] for r in runs),
            "removed_streams": [{"run": r["id"], **x} for r in runs
                                for x in r["integrity"]["removed_streams"]],
            "problems": problems,
            "scope": "the chains of each run's streams (orchestrail verify checks the whole "
                     "store, positions and head included)"}


def _agent_entry(state: RunState, s: Session) -> dict[str, Any]:
    used: dict[str, dict[str, Any]] = {}
    for tc in s.tool_calls.values():
        row = used.get(tc.tool)
        if row is None:
            row = used[tc.tool] = {"tool": tc.tool, "calls": 0, "ok": 0, "errors": 0,
                                   "denied": 0, "pending": 0, "allowed_by_definition": None}
        row["calls"] += 1
        row[{"ok": "ok", "error": "errors", "denied": "denied"}.get(tc.status, "pending")] += 1
    allowed = [str(a) for a in s.allowed_tools] if s.allowed_tools is not None else None
    for row in used.values():
        if allowed is not None:
            row["allowed_by_definition"] = tool_allowed(row["tool"], allowed)
    usage = s.effective_usage()
    return {
        "run": state.run_id, "session": s.id, "agent": s.agent, "model": s.model,
        "provider": s.provider, "task_id": s.task_id, "parent_session": s.parent_session,
        "status": s.status, "started_at": _ts(s.started_at), "finished_at": _ts(s.finished_at),
        "duration_ms": _ms(s.started_at, s.finished_at),
        "definition_hash": s.definition_hash, "definition_source": s.definition_source,
        "permission_mode": s.permission_mode, "allowed_tools": allowed,
        "tool_rules": s.tool_rules, "disallowed_tools": s.disallowed_tools,
        "tools_used": sorted(used.values(), key=lambda r: str(r["tool"])),
        "tools_not_allowed": sorted(r["tool"] for r in used.values()
                                    if r["allowed_by_definition"] is False),
        "allowed_unused": sorted(a for a in allowed or ()
                                 if not any(tool_allowed(t, [a]) for t in used)),
        "turns": len(s.turns), "tool_calls": len(s.tool_calls),
        "denials": sum(tc.decision == "denied" for tc in s.tool_calls.values()),
        "errors": sum(bool(tc.is_error) and tc.decision != "denied"
                      for tc in s.tool_calls.values()),
        "usage": usage, "tokens": total_tokens(usage), "cost_usd": s.effective_cost(),
        "final_text": _cut(s.final_text), "error": _cut(s.error),
        "removed_by_retention": f"session-{s.id}" in state.removed and not s.seen,
        "activity": [{"turn": tc.turn, "tool": tc.tool, "status": tc.status,
                      "input": _cut(tc.input, ACTIVITY_CAP),
                      "at": _ts(tc.requested_at or tc.completed_at),
                      "exit_code": tc.exit_code, "duration_ms": tc.duration_ms,
                      "position": tc.position}
                     for tc in sorted(s.tool_calls.values(), key=lambda c: c.position)],
    }


def tool_allowed(tool: str, allowed: list[str]) -> bool:
    """Does the definition's tool list name ``tool``? ``Bash(git diff:*)`` names Bash (for
    some inputs; the denials show which), ``mcp__srv__*`` names every tool of ``srv``."""
    for a in allowed:
        if a == tool or a.startswith(tool + "("):
            return True
        if a.endswith("*") and "(" not in a and tool.startswith(a[:-1]):
            return True
    return False


def _session_rows(doc: dict[str, Any], state: RunState, s: Session) -> None:
    """Decisions, files, commands, diffs and errors of one session, in call order."""
    base = {"run": state.run_id, "session": s.id, "agent": s.agent}
    decisions, files, commands, errors = (doc["decisions"], doc["files"], doc["commands"],
                                          doc["errors"])
    for tc in s.tool_calls.values():
        at = _ts(tc.requested_at or tc.completed_at)
        if tc.decision == "denied":
            decisions.append({**base, "tool_use_id": tc.tool_use_id, "tool": tc.tool,
                              "input": _cut(tc.input), "kind": "denial", "outcome": "denied",
                              "rule": tc.rule, "reason": tc.reason, "by": "policy",
                              "at": _ts(tc.completed_at) or at, "position": tc.position})
        if tc.approval:
            a = tc.approval
            approved = a.get("approved")
            outcome = ("pending" if "resolved_at" not in a else
                       "approved" if approved else "rejected")
            decisions.append({**base, "tool_use_id": tc.tool_use_id, "tool": tc.tool,
                              "input": _cut(tc.input), "kind": "approval", "outcome": outcome,
                              "rule": a.get("rule"),
                              "reason": a.get("reason") or a.get("question"),
                              "by": a.get("by"),
                              "at": a.get("resolved_at") or a.get("requested_at"),
                              "position": tc.position})
        for f in tc.files:
            f = f if isinstance(f, dict) else {"path": str(f)}
            files.append({**base, "tool": tc.tool, "tool_use_id": tc.tool_use_id,
                          "path": str(f.get("path") or "?"), "action": f.get("action"),
                          "sha256": f.get("sha256"), "bytes": f.get("bytes"),
                          "at": _ts(tc.completed_at) or at, "position": tc.position})
        command = tc.input.get("command") if isinstance(tc.input, dict) else None
        if isinstance(command, str) and tc.decision != "denied":
            commands.append({**base, "tool_use_id": tc.tool_use_id, "tool": tc.tool,
                             "command": _cut(command), "status": tc.status,
                             "exit_code": tc.exit_code, "timed_out": tc.timed_out,
                             "duration_ms": tc.duration_ms, "output": _cut(tc.output),
                             "output_sha256": tc.output_sha256,
                             "output_chars": tc.output_chars, "at": at,
                             "position": tc.position})
        if tc.is_error and tc.decision != "denied":
            errors.append({**base, "where": f"{tc.tool} {tc.tool_use_id}",
                           "kind": tc.error_kind or "tool.error",
                           "message": _cut(tc.output) or "error", "at": at,
                           "position": tc.position})
    for turn in s.turns.values():
        for a in turn.attempts:
            if a.get("error") is not None:
                errors.append({**base, "where": f"turn {turn.number} attempt {a['attempt']}",
                               "kind": "model.retry" if a.get("will_retry") else "model.failed",
                               "message": _cut(a["error"]),
                               "at": a.get("failed_at") or a.get("called_at"),
                               "position": a.get("position")})
    if s.error:
        errors.append({**base, "where": f"session {s.id}", "kind": s.error_kind or s.status,
                       "message": _cut(s.error), "at": _ts(s.finished_at), "position": None})
    for diff in s.diffs:
        doc["diffs"].append({**base, **diff_dict(diff, PATCH_CAP)})


def _usage_rows(by_agent: dict[str, dict[str, Any]], by_model: dict[str, dict[str, Any]],
                s: Session) -> None:
    name = s.agent or "?"
    row = by_agent.get(name)
    if row is None:
        row = by_agent[name] = {"agent": name, "sessions": 0, "usage": {}, "tokens": 0,
                                "cost_usd": None}
    row["sessions"] += 1
    _add_usage(row["usage"], s.effective_usage())
    row["tokens"] = total_tokens(row["usage"])
    cost = s.effective_cost()
    if cost is not None:
        row["cost_usd"] = round((row["cost_usd"] or 0.0) + cost, 8)
    for turn in s.turns.values():
        model = turn.model or s.model or "?"
        m = by_model.get(model)
        if m is None:
            m = by_model[model] = {"model": model, "turns": 0, "usage": {}, "tokens": 0,
                                   "cost_usd": None}
        m["turns"] += 1
        _add_usage(m["usage"], turn.usage)
        m["tokens"] = total_tokens(m["usage"])
        if turn.cost_usd is not None:
            m["cost_usd"] = round((m["cost_usd"] or 0.0) + turn.cost_usd, 8)


def _lane(state: RunState, s: Session) -> dict[str, Any]:
    times = [t for tc in s.tool_calls.values()
             for t in (tc.requested_at, tc.completed_at) if t is not None]
    start = s.started_at or s.dispatched_at or (min(times) if times else None)
    end = s.finished_at or (max(times) if times else None) or state.last_at
    return {"run": state.run_id, "session": s.id, "agent": s.agent or "?",
            "status": s.status, "start": start, "end": end}


def _mark(tc: ToolCall, at: datetime) -> dict[str, Any]:
    return {"tool": tc.tool, "status": tc.status, "tool_use_id": tc.tool_use_id, "at": at,
            "duration_ms": tc.duration_ms, "position": tc.position}


def _timeline(lanes: list[dict[str, Any]],
              marks: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """Lanes (sessions) and marks (tool calls) in milliseconds from the first moment."""
    times = [t for lane in lanes for t in (lane["start"], lane["end"]) if t is not None]
    times += [m["at"] for _, m in marks]
    if not times:
        return {"start": None, "end": None, "span_ms": 0, "lanes": [], "marks_total": 0,
                "marks_shown": 0}
    t0, t1 = min(times), max(times)
    keep = marks
    if len(marks) > MAX_MARKS:
        loud = [m for m in marks if m[1]["status"] != "ok"]
        quiet = [m for m in marks if m[1]["status"] == "ok"]
        room = max(0, MAX_MARKS - len(loud))
        step = len(quiet) / room if room else float("inf")
        keep = loud + [quiet[int(i * step)] for i in range(room)] if room else loud
    out_lanes = []
    for lane in lanes:
        out_lanes.append({
            "run": lane["run"], "session": lane["session"], "agent": lane["agent"],
            "status": lane["status"],
            "start_ms": _ms(t0, lane["start"]) if lane["start"] else None,
            "end_ms": _ms(t0, lane["end"]) if lane["end"] else None, "marks": []})
    for i, m in keep:
        out_lanes[i]["marks"].append({**m, "at": None, "t_ms": _ms(t0, m["at"])})
    for lane in out_lanes:
        lane["marks"].sort(key=lambda m: m["t_ms"])
        for m in lane["marks"]:
            del m["at"]
    return {"start": _ts(t0), "end": _ts(t1), "span_ms": _ms(t0, t1),
            "lanes": out_lanes, "marks_total": len(marks), "marks_shown": len(keep)}


def _summary(doc: dict[str, Any]) -> dict[str, Any]:
    runs = doc["runs"]
    starts = [r["started_at"] for r in runs if r["started_at"]]
    ends = [r["finished_at"] for r in runs if r["finished_at"]]
    usage: dict[str, int] = {}
    cost, priced = 0.0, False
    for r in runs:
        _add_usage(usage, r["usage"])
        if r["cost_usd"] is not None:
            cost += r["cost_usd"]
            priced = True
    statuses = Counter(r["status"] for r in runs)
    span = None
    if starts and ends and len(ends) == len(runs):
        span = _ms(datetime.fromisoformat(min(starts)), datetime.fromisoformat(max(ends)))
    return {
        "runs": len(runs), "statuses": dict(sorted(statuses.items())),
        "status": runs[0]["status"] if len(runs) == 1 else
        (next(iter(statuses)) if len(statuses) == 1 else "mixed"),
        "started_at": min(starts) if starts else None,
        "finished_at": max(ends) if ends and len(ends) == len(runs) else None,
        "duration_ms": runs[0]["duration_ms"] if len(runs) == 1 else span,
        "agents": sorted({a for r in runs for a in r["agents"]}),
        "tasks": sum(len(r["tasks"]) for r in runs),
        "sessions": sum(r["sessions"] for r in runs),
        "events": sum(r["events"] for r in runs),
        "tool_calls": sum(r["tool_calls"] for r in runs),
        "denials": sum(d["kind"] == "denial" for d in doc["decisions"]),
        "approvals": sum(d["kind"] == "approval" for d in doc["decisions"]),
        "commands": len(doc["commands"]), "files_changed": len({f["path"] for f in
                                                                 doc["files"]}),
        "errors": len(doc["errors"]),
        "usage": {k: usage.get(k, 0) for k in USAGE_KEYS} | usage,
        "tokens": total_tokens(usage), "cost_usd": round(cost, 8) if priced else None,
        "integrity": doc["integrity"]["verdict"],
        "complete": not doc["incomplete"],
    }
