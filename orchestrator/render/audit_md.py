"""The audit report as Markdown: the same sections, in the same order, as the HTML page.

Takes only the audit document (``orchestrator.audit.SCHEMA``), never the fold's objects,
so Markdown, HTML and JSON always say the same thing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from orchestrator.render.text import money, secs, tokens

#: tool calls listed per agent in Markdown (the JSON and HTML reports list them all)
MD_ACTIVITY = 50

VERDICTS = {
    "intact": "INTACT: every chain of the run's streams verifies",
    "intact-with-retention": "INTACT: every chain verifies; some streams were removed by "
                             "retention and each removal is accounted for",
    "broken": "BROKEN: the record was changed after it was written",
    "nothing-checked": "nothing to check",
}


def title(doc: dict[str, Any]) -> str:
    scope = doc["scope"]
    if scope.get("since") or scope.get("until"):
        return (f"Audit of {len(doc['runs'])} run(s) from {scope.get('since') or 'the start'}"
                f" to {scope.get('until') or 'now'}")
    return f"Audit of run {doc['runs'][0]['id']}" if doc["runs"] else "Audit"


def summary_rows(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) of the summary, shared with the HTML page."""
    s = doc["summary"]
    runs = ", ".join(r["id"] for r in doc["runs"][:10]) + (" …" if len(doc["runs"]) > 10
                                                           else "")
    return [
        ("runs", f"{s['runs']}: {runs}"),
        ("status", s["status"] + ("" if s["runs"] == 1 else
                                  f" ({', '.join(f'{k} {v}' for k, v in s['statuses'].items())})")),
        ("started", s["started_at"] or "?"), ("finished", s["finished_at"] or "-"),
        ("duration", secs(s["duration_ms"])),
        ("agents", ", ".join(s["agents"]) or "-"),
        ("tasks / sessions / events", f"{s['tasks']} / {s['sessions']} / {s['events']:,}"),
        ("tool calls", f"{s['tool_calls']:,} ({s['denials']} denied, "
                       f"{sum(r['tool_errors'] for r in doc['runs'])} failed)"),
        ("approval decisions / errors", f"{s['approvals']} / {s['errors']} (tool, model, "
                                        "session and task errors)"),
        ("commands run / files changed", f"{s['commands']:,} / {s['files_changed']:,}"),
        ("tokens", f"{s['tokens']:,} ({tokens(s['usage'])})"),
        ("cost", money(s["cost_usd"])),
        ("integrity", VERDICTS.get(s["integrity"], s["integrity"])),
        ("complete", "yes" if s["complete"] else
         f"NO: {len(doc['incomplete'])} missing piece(s), listed below"),
    ]


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def cell(value: Any) -> str:
    if value is None:
        return "-"
    text = str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "⏎") or "-"


def _table(head: list[str], rows: list[list[Any]]) -> Iterator[str]:
    yield "| " + " | ".join(head) + " |"
    yield "|" + "---|" * len(head)
    for row in rows:
        yield "| " + " | ".join(cell(v) for v in row) + " |"


def fence(text: str | None) -> str:
    """A code fence longer than any run of backticks inside ``text``."""
    longest, run = 0, 0
    for ch in text or "":
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def diff_note(d: dict[str, Any]) -> str:
    """Commit, files and error of a workspace diff, as one clause."""
    parts = []
    if d.get("commit"):
        parts.append(f"commit {str(d['commit'])[:12]}")
    if d["files"]:
        names = [f"{f.get('status') or f.get('action') or ''} {f.get('path')}".strip()
                 if isinstance(f, dict) else str(f) for f in d["files"][:20]]
        more = f" +{len(d['files']) - 20} more" if len(d["files"]) > 20 else ""
        parts.append("files: " + ", ".join(names) + more)
    if d.get("error"):
        parts.append(f"error: {d['error']}")
    return "; " + "; ".join(parts) if parts else ""


def short(sha: Any) -> str | None:
    return str(sha)[:12] if sha else None


def tools_rows(agent: dict[str, Any]) -> list[list[Any]]:
    """One row per tool the session used, then the allowed tools it never used."""
    rows: list[list[Any]] = []
    for t in agent["tools_used"]:
        allowed = {True: "yes", False: "NO", None: "unknown"}[t["allowed_by_definition"]]
        rows.append([t["tool"], allowed, t["calls"], t["ok"], t["errors"], t["denied"]])
    rows.extend([name, "yes (unused)", 0, 0, 0, 0] for name in agent["allowed_unused"])
    return rows


def render_audit_markdown(doc: dict[str, Any]) -> str:
    out = [f"# {title(doc)}", "", f"Generated {doc['generated_at']} from the event trail "
           f"(schema `{doc['schema']}`).", "", "## Summary", ""]
    out += _table(["", ""], [[k, v] for k, v in summary_rows(doc)])
    integ = doc["integrity"]
    out += ["", "## Integrity", "", f"**{VERDICTS.get(integ['verdict'], integ['verdict'])}** "
            f"({plural(integ['events_checked'], 'event')} in "
            f"{plural(integ['streams_checked'], 'stream')}; "
            f"{integ['scope']}).", ""]
    if integ["problems"]:
        out += _table(["run", "kind", "stream", "version", "position", "what"],
                      [[p["run"], p["kind"], p["stream"], p["version"], p["position"],
                        p["message"]] for p in integ["problems"]])
        out.append("")
    if integ["removed_streams"]:
        out += ["Removed by retention (accounted for):", ""]
        out += _table(["run", "stream", "events", "removed at"],
                      [[r["run"], r["stream"], r.get("count"), r.get("removed_at")]
                       for r in integ["removed_streams"]])
        out.append("")
    if doc["incomplete"]:
        out += ["## Incomplete", "", "The record is missing these pieces; everything else "
                "is shown.", ""]
        out += _table(["run", "where", "why"], [[g["run"], g["where"], g["reason"]]
                                                 for g in doc["incomplete"]])
        out.append("")
    out += ["## Agents", ""]
    for a in doc["agents"]:
        out += [f"### {cell(a['agent'])}: session `{a['session']}`", "",
                f"- run `{a['run']}`, task {cell(a['task_id'])}, status **{a['status']}**, "
                f"{secs(a['duration_ms'])}, {a['turns']} turns, {a['tool_calls']} tool calls "
                f"({a['denials']} denied, {a['errors']} errors)",
                f"- model {cell(a['model'])} via {cell(a['provider'])}; tokens "
                f"{a['tokens']:,}; cost {money(a['cost_usd'])}",
                f"- definition {cell(short(a['definition_hash']))} "
                f"({cell(a['definition_source'])}), permission mode "
                f"{cell(a['permission_mode'])}",
                f"- tool rules: {cell(', '.join(map(str, a['tool_rules'] or [])) or None)}"
                + (f"; disallowed: {', '.join(map(str, a['disallowed_tools']))}"
                   if a["disallowed_tools"] else "")]
        if a["tools_not_allowed"]:
            out.append(f"- **used tools its definition does not allow:** "
                       f"{', '.join(a['tools_not_allowed'])}")
        if a["error"]:
            out.append(f"- error: {cell(a['error'])}")
        if a["final_text"]:
            out.append(f"- final: {cell(a['final_text'])}")
        out.append("")
        out += _table(["tool", "allowed", "calls", "ok", "errors", "denied"], tools_rows(a))
        out.append("")
        if a["activity"]:
            shown = a["activity"][:MD_ACTIVITY]
            out += [f"What it did ({plural(len(a['activity']), 'tool call')}, in order):", ""]
            out += _table(["at", "turn", "tool", "input", "status", "exit"],
                          [[c["at"], c["turn"], c["tool"], c["input"], c["status"],
                            c["exit_code"]] for c in shown])
            if len(a["activity"]) > len(shown):
                out.append(f"\n… {len(a['activity']) - len(shown):,} more in the JSON and "
                           "HTML reports.")
            out.append("")
    out += ["## Denials and approvals", ""]
    out += _table(["at", "agent", "tool", "input", "decision", "rule", "reason", "by"],
                  [[d["at"], d["agent"], d["tool"], d["input"], d["outcome"], d["rule"],
                    d["reason"], d["by"]] for d in doc["decisions"]]) if doc["decisions"] \
        else ["None."]
    out += ["", "## Files changed", ""]
    out += _table(["at", "agent", "tool", "path", "action", "sha256", "bytes"],
                  [[f["at"], f["agent"], f["tool"], f["path"], f["action"], f["sha256"],
                    f["bytes"]] for f in doc["files"]]) if doc["files"] else ["None recorded."]
    out += ["", "## Workspace diffs", ""]
    if not doc["diffs"]:
        out.append("No `workspace.diff` events in this record (the files above come from "
                   "the tool calls).")
    for d in doc["diffs"]:
        out += [f"{d['occurred_at']} {cell(d['agent'])} session `{d['session']}`: "
                f"{d['patch_chars'] if d['patch_chars'] is not None else '?'} chars, sha256 "
                f"{cell(d['patch_sha256'])}"
                + (" (shown cut)" if d["patch_shown_truncated"] or d["truncated"] else "")
                + diff_note(d),
                "", fence(d["patch"]) + "diff", d["patch"] or "", fence(d["patch"]), ""]
    out += ["", "## Commands", ""]
    out += _table(["at", "agent", "command", "status", "exit", "duration", "output sha256"],
                  [[c["at"], c["agent"], c["command"], c["status"] + (" (timed out)" if
                                                                       c["timed_out"] else ""),
                    c["exit_code"], secs(c["duration_ms"]), short(c["output_sha256"])]
                   for c in doc["commands"]]) if doc["commands"] else ["None."]
    out += ["", "## Errors", ""]
    out += _table(["at", "agent", "where", "kind", "message"],
                  [[e["at"], e["agent"], e["where"], e["kind"], e["message"]]
                   for e in doc["errors"]]) if doc["errors"] else ["None."]
    out += ["", "## Tokens and cost", "", "By agent:", ""]
    out += _table(["agent", "sessions", "tokens", "in / out", "cost"],
                  [[r["agent"], r["sessions"], f"{r['tokens']:,}", tokens(r["usage"]),
                    money(r["cost_usd"])] for r in doc["usage"]["by_agent"]])
    out += ["", "By model:", ""]
    out += _table(["model", "turns", "tokens", "in / out", "cost"],
                  [[r["model"], r["turns"], f"{r['tokens']:,}", tokens(r["usage"]),
                    money(r["cost_usd"])] for r in doc["usage"]["by_model"]])
    tl = doc["timeline"]
    out += ["", "## Timeline", "", f"From {tl['start']} to {tl['end']} "
            f"({secs(tl['span_ms'])}); one row per session, offsets from the start.", ""]
    out += _table(["session", "agent", "status", "from", "to", "tool calls", "denied"],
                  [[lane["session"], lane["agent"], lane["status"], secs(lane["start_ms"]),
                    secs(lane["end_ms"]), len(lane["marks"]),
                    sum(m["status"] == "denied" for m in lane["marks"])]
                   for lane in tl["lanes"]])
    if doc["unknown_types"]:
        out += ["", "## Events this version does not know", ""]
        out += _table(["run", "type", "events"], [[u["run"], u["type"], u["events"]]
                                                  for u in doc["unknown_types"]])
    return "\n".join(out) + "\n"
