"""Terminal text and Markdown renderings of a replayed run (the tree, one node a line).

Both walk the tree the same way (``walk``), so they always list the same nodes in the same
order; only the decoration differs. Inputs and outputs are cut to one short line unless
``full`` is asked for; a cut is always marked with an ellipsis and the full size.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

SHORT = 120

_COLORS = {"ok": "green", "completed": "green", "denied": "red", "error": "red",
           "failed": "red", "pending": "yellow", "running": "yellow", "incomplete": "yellow",
           "retry": "magenta", "dim": "bright_black", "head": "cyan"}


def clip(value: Any, full: bool, limit: int = SHORT) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                           default=str)
    if full:
        return text
    one = text.replace("\n", "⏎")
    if len(one) <= limit:
        return one
    return f"{one[:limit]}… ({len(text):,} chars)"


def secs(ms: Any) -> str:
    if ms is None:
        return "?"
    if ms < 1000:
        return f"{ms:.0f}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    minutes, seconds = divmod(int(ms // 1000), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def tokens(usage: dict[str, Any] | None) -> str:
    usage = usage or {}
    parts = [f"in {usage.get('input_tokens', 0):,}", f"out {usage.get('output_tokens', 0):,}"]
    if usage.get("cache_read_input_tokens"):
        parts.append(f"cache {usage['cache_read_input_tokens']:,}")
    return " / ".join(parts)


def money(cost: Any) -> str:
    """A cost, or ``n/a`` when unknown (a model with no price, a script provider)."""
    return f"${cost:.4f}" if isinstance(cost, int | float) else "n/a"


def _when(ts: str | None) -> str:
    return ts[:19].replace("T", " ") if ts else "?"


def walk(doc: dict[str, Any], full: bool) -> Iterator[tuple[int, str, str, list[str]]]:
    """(depth, status-for-colour, headline, detail lines) for every node, in tree order."""
    run = doc["run"]
    tot = run["totals"]
    head = (f"run {run['id']}  {run['status']}  {_when(run['started_at'])} "
            f"({secs(run['duration_ms'])})  agents: {', '.join(run['agents']) or '-'}")
    details = [f"tokens {tot['tokens']:,} ({tokens(tot['usage'])})  cost {money(tot['cost_usd'])}"
               f"  events {tot['events']:,}  sessions {tot['sessions']}  turns {tot['turns']}"
               f"  tool calls {tot['tool_calls']} ({tot['denials']} denied, "
               f"{tot['tool_errors']} errors, {tot['retries']} model retries)"]
    for r in run.get("resumes") or []:
        details.append(f"resumed {_when(r.get('at'))} @{r.get('position')} (was "
                       f"{r.get('previous_status') or '?'}): "
                       + (", ".join(f"{t.get('task_id')} {t.get('action')}"
                                    for t in r.get("takeover") or []) or "nothing in flight"))
    if doc["incomplete"]:
        details.append(f"INCOMPLETE: {len(doc['incomplete'])} missing piece(s), see below")
    yield 0, "incomplete" if doc["incomplete"] else run["status"], head, details
    sessions = {s["id"]: s for s in doc["sessions"]}
    shown: set[str] = set()
    for task in doc["tasks"]:
        line = (f"task {task['id']}  {task['status']}  {clip(task['title'] or '', full, 60)}"
                f"  agent {task['agent'] or '-'}  attempts {task['attempts']}")
        extra = []
        if task.get("error"):
            extra.append(f"error: {clip(task['error'], full)}")
        elif task.get("result"):
            extra.append(f"result: {clip(task['result'], full)}")
        for r in task.get("reviews") or []:
            extra.append(f"review of attempt {r['attempt']} by {r['agent'] or '?'}: "
                         f"{r['verdict']} - {clip(r['reason'] or '', full, 100)}")
        yield 1, task["status"], line, extra
        for sid in task["sessions"]:
            if sid in sessions:
                yield from _session(sessions, sid, 2, full, shown)
    loose = [s for s in doc["sessions"] if s["id"] not in shown and
             (not s["parent_session"] or s["parent_session"] not in sessions)]
    for s in loose:
        yield from _session(sessions, s["id"], 1, full, shown)
    for other in doc["other"]:
        yield 1, "dim", f"{other['type']}  @{other['position']}  {other['stream']}", [
            clip(other["data"], full)]
    for gap in doc["incomplete"]:
        yield 1, "incomplete", f"incomplete: {gap['where']}: {gap['reason']}", []


def _session(sessions: dict[str, dict[str, Any]], sid: str, depth: int, full: bool,
             shown: set[str]) -> Iterator[tuple[int, str, str, list[str]]]:
    if sid in shown:
        return
    shown.add(sid)
    s = sessions[sid]
    status = "incomplete" if s["removed_by_retention"] else s["status"]
    line = (f"session {s['id']}  {s['agent'] or '?'}  {s['model'] or '?'}"
            f" ({s['provider'] or '?'})  {status}  {secs(s['duration_ms'])}"
            f"  tokens {s['tokens']:,}  {money(s['cost_usd'])}")
    extra = []
    link = s.get("rerun_of") or s.get("forked_from")
    if isinstance(link, dict):
        at = f" at turn {link['live_from_turn']}" if link.get("live_from_turn") else ""
        extra.append(f"{'rerun' if s.get('rerun_of') else 'fork'} of run {link.get('run_id')}"
                     f" session {link.get('session_id')}{at}")
    for r in s.get("resumes") or []:
        left = [f"{c.get('tool')} {c.get('state')}" for c in r.get("tool_calls_pending") or []]
        extra.append(f"resumed {_when(r.get('at'))} @{r.get('position')} (was "
                     f"{r.get('previous_status') or '?'}) on {r.get('provider') or '?'}"
                     + (f"; left open: {', '.join(left)}" if left else ""))
    if s["removed_by_retention"]:
        extra.append("events removed by retention")
    if s["error"]:
        extra.append(f"error ({s['error_kind'] or '?'}): {clip(s['error'], full)}")
    if s["budget"]:
        extra.append(f"budget: {clip(s['budget'], full)}")
    if s["final_text"]:
        extra.append(f"final: {clip(s['final_text'], full)}")
    yield depth, status, line, extra
    for turn in s["turns"]:
        st = turn["status"] if not turn["retries"] else "retry"
        line = (f"turn {turn['turn']}  {turn['status']}  {secs(turn['latency_ms'])}"
                f"  {turn['stop_reason'] or '-'}  {tokens(turn['usage'])}")
        if turn["retries"]:
            line += f"  retries {turn['retries']}"
        # the calls' outcomes on the turn's own line, so a collapsed turn still shows a denial
        outcomes = [c["status"] for c in turn["tool_calls"]]
        if outcomes:
            line += "  " + "  ".join(f"{_MARK[c['status']]} {c['tool']}"
                                     for c in turn["tool_calls"])
            for worst in ("denied", "error"):
                if worst in outcomes:
                    st = worst
                    break
        extra = []
        for a in turn["attempts"]:
            if a.get("error"):
                extra.append(f"attempt {a['attempt']} failed: {clip(a['error'], full, 80)}"
                             + (f" (retry in {a['delay_s']}s)" if a.get("will_retry") else ""))
        if turn["text"]:
            extra.append(f"says: {clip(turn['text'], full)}")
        yield depth + 1, st, line, extra
        for call in turn["tool_calls"]:
            yield _call(call, depth + 2, full)
    for call in s["tool_calls_without_turn"]:
        yield _call(call, depth + 1, full)
    for other in s["other"]:
        yield depth + 1, "dim", f"{other['type']}  @{other['position']}", [
            clip(other["data"], full)]
    for child in s["children"]:
        yield from _session(sessions, child, depth + 1, full, shown)


_MARK = {"ok": "✓", "error": "✗", "denied": "⊘", "pending": "…"}


def _call(c: dict[str, Any], depth: int, full: bool) -> tuple[int, str, str, list[str]]:
    mark = _MARK[c["status"]]
    line = f"{mark} {c['tool']}  {c['status']}"
    if c["duration_ms"] is not None:
        line += f"  {secs(c['duration_ms'])}"
    if c["exit_code"] is not None:
        line += f"  exit {c['exit_code']}"
    if c.get("error_kind") == "interrupted":
        line += "  interrupted by a crash, not run again"
    extra = [f"input: {clip(c['input'], full)}"]
    if c["approval"]:
        a = c["approval"]
        extra.append(f"approval: {'approved' if a.get('approved') else 'not approved'}"
                     f" by {a.get('by') or '?'}")
    if c["status"] == "denied":
        extra.append(f"denied: {c['reason'] or '?'}" + (f" (rule {c['rule']})"
                                                        if c["rule"] else ""))
    elif c["output"] is not None:
        extra.append(f"output: {clip(c['output'], full)}")
    if c["files"]:
        extra.append("files: " + ", ".join(str(f.get("path", f)) if isinstance(f, dict)
                                            else str(f) for f in c["files"]))
    if c["incomplete"]:
        extra.append(f"incomplete: {c['incomplete']}")
    return depth, c["status"], line, extra


def render_text(doc: dict[str, Any], *, color: bool = False, full: bool = False) -> str:
    import click

    lines: list[str] = []
    for depth, status, head, details in walk(doc, full):
        pad = "  " * depth
        shown = click.style(head, fg=_COLORS.get(status)) if color else head
        lines.append(pad + shown)
        for d in details:
            d = d.replace("\n", "\n" + pad + "      ")
            lines.append(pad + "    " + (click.style(d, fg="bright_black") if color else d))
    return "\n".join(lines)


def render_markdown(doc: dict[str, Any], *, full: bool = False) -> str:
    lines = [f"# Replay of run `{doc['run']['id']}`", ""]
    for depth, _status, head, details in walk(doc, full):
        lines.append("  " * depth + f"- **{_md(head)}**")
        for d in details:
            body = _md(d).replace("\n", "\n" + "  " * (depth + 2))
            lines.append("  " * (depth + 1) + f"- {body}")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    for ch in ("\\", "`", "*", "_", "<", ">", "[", "]"):
        text = text.replace(ch, "\\" + ch)
    return text
