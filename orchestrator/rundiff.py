"""``diff``: where two runs of the same work differ.

Both runs are read through the one fold (``orchestrator.fold``), then aligned by content,
not by position:

* tasks by id (a rerun of a backlog keeps its task ids), else by title;
* sessions by (agent, task) in start order, with ``difflib.SequenceMatcher`` so an extra
  session in one run does not shift every later pair;
* tool calls inside a pair of sessions by the sequence of (tool, normalised input): the
  same call made in both runs is compared even if one run made other calls before it.

Aligned calls are compared with the rule ``rerun`` uses (``orchestrator.outcomes``):
outcome (status, exit code, timeout, error kind) and normalised output. What never counts
as a difference: ids, timestamps, durations, latencies, workspace paths.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eventstore.base import EventStore
    from orchestrator.fold import RunState, Session, ToolCall

SCHEMA = "orchestrail.diff/1"


def _field(name: str, a: Any, b: Any) -> dict[str, Any]:
    return {"field": name, "a": a, "b": b}


def _fields(pairs: Sequence[tuple[str, Any, Any]]) -> list[dict[str, Any]]:
    return [_field(n, a, b) for n, a, b in pairs if a != b]


def _run_summary(st: RunState) -> dict[str, Any]:
    t = st.totals()
    return {"run_id": st.run_id, "status": st.derived_status(), "tokens": t["tokens"],
            "cost_usd": t["cost_usd"], "sessions": t["sessions"], "tasks": t["tasks"],
            "turns": t["turns"], "tool_calls": t["tool_calls"], "denials": t["denials"],
            "tool_errors": t["tool_errors"], "incomplete": st.incomplete()}


def _prompt_sha(s: Session) -> str | None:
    p = s.started_data.get("prompt")
    return hashlib.sha256(p.encode()).hexdigest()[:12] if isinstance(p, str) else None


def _session_key(s: Session, st: RunState, depth: int = 0) -> tuple[str, ...]:
    """(agent, task) and, for a subagent, what spawned it: its caller's key (lineage: a
    lead's children pair by the lead and the task of the Agent call, not by position)."""
    task = st.tasks.get(s.task_id) if s.task_id else None
    what = str(task.title or task.id) if task else ""
    parent = st.sessions.get(s.parent_session or "")
    if parent is None or depth > 8:
        return (str(s.agent), what)
    return (str(s.agent), what or _prompt_sha(s) or "", *_session_key(parent, st, depth + 1))


def _linked(s: Session) -> str | None:
    """The session ``s`` is a rerun or fork of (``agent.started`` records it)."""
    for key in ("rerun_of", "forked_from"):
        link = s.started_data.get(key)
        if isinstance(link, dict) and isinstance(link.get("session_id"), str):
            return str(link["session_id"])
    return None


def _ordered(st: RunState) -> list[Session]:
    return sorted(st.sessions.values(), key=lambda s: (s.started_at is None, s.started_at,
                                                       s.id))


def _calls(s: Session) -> list[ToolCall]:
    return sorted(s.tool_calls.values(), key=lambda c: c.position)


def _call_brief(c: ToolCall) -> dict[str, Any]:
    from orchestrator.outcomes import outcome

    return {"tool_use_id": c.tool_use_id, "tool": c.tool, "turn": c.turn, "input": c.input,
            **outcome(c)}


def diff_calls(a: Session, b: Session, aliases: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Changed, missing and extra tool calls of two aligned sessions. ``aliases``: the ids
    of paired sessions, equal in outputs (an Agent call's result names its child)."""
    from orchestrator.outcomes import compare_calls, input_key

    roots = [*(str(x.started_data.get("workspace") or "") for x in (a, b)), *aliases]
    ca, cb = _calls(a), _calls(b)
    ka, kb = [input_key(c, roots) for c in ca], [input_key(c, roots) for c in cb]
    out: list[dict[str, Any]] = []
    matcher = difflib.SequenceMatcher(None, ka, kb, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            for x, y in zip(ca[i1:i2], cb[j1:j2], strict=True):
                d = compare_calls(x, y, roots, strict=True, labels=("a", "b"))
                if d is not None:
                    out.append({"op": "changed", "tool": x.tool, "input": x.input,
                                "a": _call_brief(x), "b": _call_brief(y),
                                "difference": d["kind"], "fields": d["fields"],
                                "output_diff": d["output_diff"]})
            continue
        xs, ys = ca[i1:i2], cb[j1:j2]
        while xs and ys and xs[0].tool == ys[0].tool:  # same tool, other input
            x, y = xs.pop(0), ys.pop(0)
            out.append({"op": "changed", "tool": x.tool, "input": x.input,
                        "a": _call_brief(x), "b": _call_brief(y), "difference": "input",
                        "fields": ["input"], "output_diff": []})
        out += [{"op": "only_a", "tool": x.tool, "input": x.input, "a": _call_brief(x)}
                for x in xs]
        out += [{"op": "only_b", "tool": y.tool, "input": y.input, "b": _call_brief(y)}
                for y in ys]
    return out


def diff_sessions(a: Session, b: Session, aliases: Sequence[str] = ()) -> dict[str, Any]:
    from orchestrator.fold import total_tokens

    fields = _fields([
        ("status", a.status, b.status), ("model", a.model, b.model),
        ("prompt_sha256", _prompt_sha(a), _prompt_sha(b)),
        ("definition_hash", a.definition_hash, b.definition_hash),
        ("turns", len(a.turns), len(b.turns)),
        ("tool_calls", len(a.tool_calls), len(b.tool_calls)),
        ("denials", sum(1 for c in a.tool_calls.values() if c.status == "denied"),
         sum(1 for c in b.tool_calls.values() if c.status == "denied")),
        ("tokens", total_tokens(a.effective_usage()), total_tokens(b.effective_usage())),
        ("cost_usd", a.effective_cost(), b.effective_cost()),
        ("final_text", a.final_text, b.final_text),
        ("error_kind", a.error_kind, b.error_kind)])
    calls = diff_calls(a, b, aliases)
    return {"op": "changed" if fields or calls else "same", "agent": a.agent, "a": a.id,
            "b": b.id, "fields": fields, "tool_calls": calls,
            "same_tool_calls": len(a.tool_calls) - sum(1 for c in calls if "a" in c)}


def compare_runs(a: RunState, b: RunState) -> dict[str, Any]:
    """The difference document (``SCHEMA``) of two folded runs."""
    sa, sb = _run_summary(a), _run_summary(b)
    # A rerun executes sessions, not the backlog: tasks compare only when both have them.
    with_tasks = bool(a.tasks) and bool(b.tasks)
    run_fields = _fields([(k, sa[k], sb[k]) for k in
                          ("status", "tasks", "sessions", "turns", "tool_calls", "denials",
                           "tool_errors", "tokens", "cost_usd")
                          if k != "tasks" or with_tasks])
    tasks: list[dict[str, Any]] = []
    b_tasks = dict(b.tasks)
    b_by_title = {t.title: t for t in b.tasks.values() if t.title}
    for tid, t in (a.tasks if with_tasks else {}).items():
        u = b_tasks.pop(tid, None)
        if u is None and t.title in b_by_title:
            u = b_tasks.pop(b_by_title[t.title].id, None)
        if u is None:
            tasks.append({"op": "only_a", "task": tid, "title": t.title})
            continue
        f = _fields([("status", t.status, u.status), ("attempts", t.attempts, u.attempts),
                     ("agent", t.agent, u.agent)])
        if f:
            tasks.append({"op": "changed", "task": tid, "title": t.title, "fields": f})
    tasks += [{"op": "only_b", "task": tid, "title": u.title}
              for tid, u in (b_tasks if with_tasks else {}).items()]
    la, lb = _ordered(a), _ordered(b)
    keys_a = [_session_key(s, a) for s in la]
    by_id = {s.id: k for s, k in zip(la, keys_a, strict=True)}
    # a rerun's session takes the key of the session it reran (lineage beats guessing)
    keys_b = [by_id.get(_linked(s) or "") or _session_key(s, b) for s in lb]
    matcher = difflib.SequenceMatcher(None, keys_a, keys_b, autojunk=False)
    sessions: list[dict[str, Any]] = []
    pairs: list[tuple[Session, Session] | tuple[Session, None] | tuple[None, Session]] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        xs, ys = la[i1:i2], lb[j1:j2]
        if op == "equal" or (op == "replace" and len(xs) == len(ys)):
            pairs += list(zip(xs, ys, strict=True))
            continue
        pairs += [(x, None) for x in xs]
        pairs += [(None, y) for y in ys]
    # paired sessions are the same session in both runs: a lead's Agent result naming its
    # child's id is not a difference
    aliases = [p.id for pair in pairs if None not in pair for p in pair if p is not None]
    for x, y in pairs:
        if x is not None and y is not None:
            sessions.append(diff_sessions(x, y, aliases))
        elif x is not None:
            sessions.append({"op": "only_a", "agent": x.agent, "a": x.id})
        elif y is not None:
            sessions.append({"op": "only_b", "agent": y.agent, "b": y.id})
    changed = [s for s in sessions if s["op"] != "same"]
    identical = not (run_fields or tasks or changed)
    return {"schema": SCHEMA, "identical": identical, "a": sa, "b": sb, "run": run_fields,
            "tasks": tasks, "sessions": sessions}


async def diff_runs(store: EventStore, a: str, b: str) -> dict[str, Any]:
    from orchestrator.cli.replay import load_run

    return compare_runs(await load_run(store, a), await load_run(store, b))
