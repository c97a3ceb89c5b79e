"""The audit report as one self-contained HTML page: inline CSS and script, no network.

Why it is built this way: the page must stay usable for a run of 10,000+ events. So every
section is a ``<details>`` element, long tables render their first ``PAGE`` rows and keep
the rest as pre-rendered HTML inside a ``<script type="application/json">`` block (text,
not DOM) that a "show more" button appends a page at a time, and every value is cut to a
few hundred characters (with its full size and sha256). The timeline is an inline SVG:
one lane per session, one mark per tool call, denials drawn as red diamonds and errors as
orange bars so they stand out from the green ticks of ordinary calls.
"""

from __future__ import annotations

import html
import json
from typing import Any

from orchestrator.render.audit_md import (
    VERDICTS,
    diff_note,
    plural,
    short,
    summary_rows,
    title,
    tools_rows,
)
from orchestrator.render.text import money, secs, tokens

#: table rows in the DOM before "show more"
PAGE = 100
#: timeline geometry (SVG user units)
WIDTH, LABEL, LANE_H, TOP = 1100, 240, 22, 26
MAX_LANES = 300

_CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d2329;
background:#f6f7f9}
main{max-width:1240px;margin:0 auto;padding:1.2em 1.6em 3em}
h1{font-size:1.45em;margin:.2em 0 .1em}h1 code{font-size:.9em}
.sub{color:#5b6570;margin:0 0 1em}
.badge{display:inline-block;padding:.15em .7em;border-radius:1em;font-weight:600;
font-size:.85em;vertical-align:middle;margin-left:.5em}
.b-intact{background:#dff3e4;color:#17602a}.b-broken{background:#fde2e4;color:#a4001c}
.b-incomplete{background:#fff1cc;color:#7a5300}
.card{background:#fff;border:1px solid #dde2e7;border-radius:8px;margin:.8em 0;
padding:.2em 1em .6em}
details>summary{cursor:pointer;font-weight:600;font-size:1.08em;padding:.5em 0;
list-style-position:outside}
details details>summary{font-size:1em;font-weight:500}
details.agent{border-top:1px solid #eef0f2;padding-left:.3em}
table{border-collapse:collapse;width:100%;margin:.3em 0 .6em;font-size:.92em}
th,td{text-align:left;padding:.25em .55em;border-bottom:1px solid #eef0f2;vertical-align:top}
th{background:#f3f5f7;font-weight:600;white-space:nowrap}
td.num{font-variant-numeric:tabular-nums}
table.kv th{width:14em;background:none;color:#5b6570;font-weight:500}
code,.mono,td.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.92em}
td.mono{word-break:break-all}td.t{white-space:nowrap}
.ok,.completed,.approved{color:#17602a}
.denied,.error,.failed,.rejected,.NO,.broken{color:#b00020;font-weight:600}
.pending,.running,.incomplete{color:#8a6100}
.dim{color:#6b7580}
pre.patch{background:#0f1720;color:#e6edf3;padding:.7em;border-radius:6px;overflow:auto;
max-height:32em;font-size:.85em}
button.more{margin:.2em 0 .8em;padding:.3em .9em;border:1px solid #b8c2cc;border-radius:5px;
background:#fff;cursor:pointer}
.tl{overflow-x:auto}
svg.timeline{display:block;width:100%;height:auto;background:#fff}
svg .lane-bg{fill:#f3f5f7}svg .lane-bar{fill:#cfe3f7}
svg .lane-bar.failed{fill:#f6d0d5}svg .lane-label{font:12px system-ui,sans-serif;fill:#1d2329}
svg .axis{font:11px system-ui,sans-serif;fill:#6b7580}svg .grid{stroke:#e3e7eb}
svg .mark.ok{fill:#2e8b57}svg .mark.error{fill:#e07000}svg .mark.pending{fill:#a0a0a0}
svg .mark.denied{fill:#d0021b;stroke:#fff;stroke-width:.8}
.legend span{margin-right:1.2em}.legend i{display:inline-block;width:10px;height:10px;
margin-right:.3em;vertical-align:middle}
"""

_JS = """
document.querySelectorAll('button.more').forEach(function(b){
  b.addEventListener('click',function(){
    var src=document.getElementById(b.dataset.src), body=document.getElementById(b.dataset.body);
    var rows=JSON.parse(src.textContent), at=+b.dataset.at, n=+b.dataset.page;
    body.insertAdjacentHTML('beforeend', rows.slice(at, at+n).join(''));
    at+=n; b.dataset.at=at;
    if(at>=rows.length){b.remove();} else {b.textContent='show more: '+
      Math.min(n,rows.length-at)+' of '+(rows.length-at);}
  });
});
document.addEventListener('toggle',function(e){
  var d=e.target; if(!d.open) return;
  d.querySelectorAll('button.more[data-lazy]').forEach(function(b){
    if(b.closest('details')===d){b.removeAttribute('data-lazy'); b.click();}
  });
},true);
"""


def _e(value: Any) -> str:
    return html.escape("-" if value is None else str(value))


class _Page:
    """Collects the page; tables past ``PAGE`` rows keep the rest out of the DOM."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.tables = 0

    def add(self, *parts: str) -> None:
        self.out.extend(parts)

    def table(self, head: list[str], rows: list[str], *, empty: str = "None.",
              lazy: bool = False) -> None:
        """``rows`` are ``<tr>`` strings (already escaped). The first ``PAGE`` rows go in
        the DOM, the rest in a JSON text block; ``lazy`` (tables in closed sections) puts
        every row there, to be drawn when the section is opened."""
        if not rows:
            self.add(f"<p class=dim>{html.escape(empty)}</p>")
            return
        self.tables += 1
        n = self.tables
        ths = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        shown = 0 if lazy else PAGE
        self.add(f"<table><thead><tr>{ths}</tr></thead><tbody id=t{n}>",
                 *rows[:shown], "</tbody></table>")
        rest = rows[shown:]
        if rest:
            blob = json.dumps(rest, ensure_ascii=False).replace("</", "<\\/")
            label = "show" if lazy else "show more:"
            self.add(f"<script type=application/json id=r{n}>{blob}</script>",
                     f"<button class=more{' data-lazy' if lazy else ''} data-src=r{n} "
                     f"data-body=t{n} data-at=0 data-page={PAGE}>{label} "
                     f"{min(PAGE, len(rest))} of {len(rest)}</button>")


def _tr(*cells: str) -> str:
    return "<tr>" + "".join(cells) + "</tr>"


def _td(value: Any, cls: str = "") -> str:
    c = f" class={cls}" if cls else ""
    return f"<td{c}>{_e(value)}</td>"


def _at(ts: str | None) -> str:
    """A timestamp cell: ``2026-11-23 10:00:02.997`` on one line, the full value on hover."""
    if not ts:
        return "<td>-</td>"
    return f"<td class=t title=\"{_e(ts)}\">{_e(ts[:23].replace('T', ' '))}</td>"


def _num(value: Any) -> str:
    return f"<td class=num>{_e(value)}</td>"


def render_audit_html(doc: dict[str, Any]) -> str:
    s = doc["summary"]
    verdict = doc["integrity"]["verdict"]
    badge = ("b-broken", "integrity: BROKEN") if verdict == "broken" else (
        "b-intact", "integrity: intact")
    p = _Page()
    p.add("<!doctype html><html lang=en><head><meta charset=utf-8>",
          "<meta name=viewport content=\"width=device-width,initial-scale=1\">",
          f"<title>{_e(title(doc))}</title><style>{_CSS}</style></head><body><main>",
          f"<h1>{_e(title(doc))}<span class=\"badge {badge[0]}\">{badge[1]}</span>")
    if not s["complete"]:
        p.add("<span class=\"badge b-incomplete\">incomplete record</span>")
    p.add("</h1>", f"<p class=sub>Generated {_e(doc['generated_at'])} from the event trail "
          f"(schema <code>{_e(doc['schema'])}</code>). Nothing here was executed.</p>")
    # summary
    p.add("<section class=card id=summary><details open><summary>Summary</summary>"
          "<table class=kv>")
    p.add(*(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in summary_rows(doc)))
    p.add("</table></details></section>")
    _timeline(p, doc)
    _integrity(p, doc)
    _agents(p, doc)
    _decisions(p, doc)
    _files(p, doc)
    _commands(p, doc)
    _errors(p, doc)
    _usage(p, doc)
    if doc["unknown_types"]:
        p.add("<section class=card id=unknown><details open><summary>Events this version "
              "does not know</summary>")
        p.table(["run", "type", "events"], [_tr(_td(u["run"]), _td(u["type"], "mono"),
                                                 _num(u["events"]))
                                             for u in doc["unknown_types"]])
        p.add("</details></section>")
    p.add(f"</main><script>{_JS}</script></body></html>")
    return "\n".join(p.out)


def _timeline(p: _Page, doc: dict[str, Any]) -> None:
    """One SVG per run, each on its own time scale (runs of a window can be days apart)."""
    tl = doc["timeline"]
    lanes = tl["lanes"][:MAX_LANES]
    p.add("<section class=card id=timeline><details open><summary>Timeline</summary>")
    if not lanes:
        p.add("<p class=dim>No sessions to draw.</p></details></section>")
        return
    p.add("<p class=\"legend dim\"><span><i style=background:#cfe3f7></i>session</span>"
          "<span><i style=background:#2e8b57></i>tool call ok</span>"
          "<span><i style=background:#e07000></i>tool error</span>"
          "<span><i style=\"background:#d0021b;transform:rotate(45deg)\"></i>denied</span>"
          f"<span>{_e(tl['start'])} → {_e(tl['end'])} ({_e(secs(tl['span_ms']))})</span></p>")
    by_run: dict[str, list[dict[str, Any]]] = {}
    for lane in lanes:
        by_run.setdefault(lane["run"], []).append(lane)
    for run_id, run_lanes in by_run.items():
        if len(by_run) > 1:
            p.add(f"<p class=dim>run <code>{_e(run_id)}</code></p>")
        p.add("<div class=tl>", *_svg(run_lanes), "</div>")
    notes = []
    if tl["marks_shown"] < tl["marks_total"]:
        notes.append(f"{tl['marks_shown']:,} of {tl['marks_total']:,} tool calls drawn "
                     "(every denial and error kept; ordinary calls thinned out)")
    if len(tl["lanes"]) > MAX_LANES:
        notes.append(f"first {MAX_LANES} of {len(tl['lanes'])} sessions drawn")
    if notes:
        p.add(f"<p class=dim>{_e('; '.join(notes))}.</p>")
    p.add("</details></section>")


def _svg(lanes: list[dict[str, Any]]) -> list[str]:
    """Lanes (sessions) with their marks (tool calls), scaled to these lanes' own span."""
    times = [t for lane in lanes for t in (lane["start_ms"], lane["end_ms"]) if t is not None]
    times += [m["t_ms"] for lane in lanes for m in lane["marks"] if m["t_ms"] is not None]
    t0 = min(times) if times else 0.0
    span = (max(times) - t0 if times else 0.0) or 1.0
    plot = WIDTH - LABEL - 16
    height = TOP + LANE_H * len(lanes) + 8
    marks = sum(len(lane["marks"]) for lane in lanes)

    def x(ms: float | None) -> float:
        return LABEL + plot * (((ms if ms is not None else t0) - t0) / span)

    svg = [f"<svg class=timeline viewBox=\"0 0 {WIDTH} {height}\" role=img "
           f"aria-label=\"timeline of {len(lanes)} sessions and {marks} tool calls\">"]
    for i in range(6):  # time axis: six ticks, from this run's first moment
        tx = LABEL + plot * i / 5
        anchor = "start" if i == 0 else "end" if i == 5 else "middle"
        svg.append(f"<line class=grid x1={tx:.1f} y1={TOP - 6} x2={tx:.1f} y2={height - 4} />"
                   f"<text class=axis x={tx:.1f} y={TOP - 10} text-anchor={anchor}>"
                   f"{_e(secs(span * i / 5))}</text>")
    for i, lane in enumerate(lanes):
        y = TOP + i * LANE_H
        svg.append(f"<g class=lane data-session=\"{_e(lane['session'])}\">"
                   f"<rect class=lane-bg x=0 y={y} width={WIDTH} height={LANE_H - 2} />"
                   f"<text class=lane-label x=6 y={y + 15}>"
                   f"{_e(_clip(lane['agent'], 20))} · {_e(_clip(lane['session'], 9))}</text>")
        if lane["start_ms"] is not None:
            x0 = x(lane["start_ms"])
            x1 = max(x(lane["end_ms"] if lane["end_ms"] is not None else t0 + span), x0 + 2)
            svg.append(f"<rect class=\"lane-bar {_e(lane['status'])}\" x={x0:.1f} "
                       f"y={y + 4} width={x1 - x0:.1f} height={LANE_H - 10} rx=3>"
                       f"<title>{_e(lane['agent'])} {_e(lane['session'])}: "
                       f"{_e(lane['status'])}</title></rect>")
        for m in lane["marks"]:
            mx = x(m["t_ms"])
            tip = (f"<title>{_e(m['tool'])} {_e(m['status'])} @{m['position']}"
                   f"{' ' + secs(m['duration_ms']) if m['duration_ms'] is not None else ''}"
                   "</title>")
            cy = y + LANE_H / 2 - 1
            if m["status"] == "denied":
                svg.append(f"<path class=\"mark denied\" d=\"M{mx:.1f} {cy - 7:.1f}l6 7-6 7-6-7z"
                           f"\">{tip}</path>")
            else:
                w = max(1.5, plot * (m["duration_ms"] or 0) / span)
                svg.append(f"<rect class=\"mark {_e(m['status'])}\" x={mx:.1f} y={y + 3} "
                           f"width={w:.1f} height={LANE_H - 8}>{tip}</rect>")
        svg.append("</g>")
    svg.append("</svg>")
    return svg


def _clip(text: Any, n: int) -> str:
    t = str(text)
    return t if len(t) <= n else t[:n - 1] + "…"


def _integrity(p: _Page, doc: dict[str, Any]) -> None:
    integ = doc["integrity"]
    cls = "broken" if integ["verdict"] == "broken" else "ok"
    p.add("<section class=card id=integrity><details open><summary>Integrity</summary>",
          f"<p class={cls}>{_e(VERDICTS.get(integ['verdict'], integ['verdict']))}</p>",
          f"<p class=dim>{plural(integ['events_checked'], 'event')} in "
          f"{plural(integ['streams_checked'], 'stream')} checked: {_e(integ['scope'])}.</p>")
    if integ["problems"]:
        p.table(["run", "kind", "stream", "version", "position", "event", "what"], [
            _tr(_td(x["run"]), _td(x["kind"], "error"), _td(x["stream"], "mono"),
                _num(x["version"]), _num(x["position"]), _td(x["event_id"], "mono"),
                _td(x["message"])) for x in integ["problems"]])
    if integ["removed_streams"]:
        p.add("<p>Removed by retention, each accounted for by a retention record:</p>")
        p.table(["run", "stream", "events", "removed at"], [
            _tr(_td(r["run"]), _td(r["stream"], "mono"), _num(r.get("count")),
                _td(r.get("removed_at"))) for r in integ["removed_streams"]])
    if doc["incomplete"]:
        p.add("<p class=incomplete>The record is incomplete; everything that is there is "
              "shown. Missing:</p>")
        p.table(["run", "where", "why"], [_tr(_td(g["run"]), _td(g["where"], "mono"),
                                               _td(g["reason"])) for g in doc["incomplete"]])
    p.add("</details></section>")


def _agents(p: _Page, doc: dict[str, Any]) -> None:
    p.add("<section class=card id=agents><details open><summary>Agents "
          f"({plural(len(doc['agents']), 'session')})</summary>")
    for a in doc["agents"]:
        flag = (f" <span class=NO>used tools not allowed: "
                f"{_e(', '.join(a['tools_not_allowed']))}</span>"
                if a["tools_not_allowed"] else "")
        p.add(f"<details class=agent><summary><span class={_e(a['status'])}>"
              f"{_e(a['agent'])}</span> <span class=dim>session <code>{_e(a['session'])}</code>"
              f" · {_e(a['status'])} · {_e(secs(a['duration_ms']))} · {a['tool_calls']} tool "
              f"calls, {a['denials']} denied, {a['errors']} errors · {a['tokens']:,} tokens · "
              f"{_e(money(a['cost_usd']))}</span>{flag}</summary><table class=kv>")
        rows = [("run / task", f"{a['run']} / {a['task_id'] or '-'}"),
                ("model", f"{a['model'] or '?'} via {a['provider'] or '?'}"),
                ("definition", f"{a['definition_hash'] or '?'} ({a['definition_source'] or '?'})"),
                ("permission mode", a["permission_mode"]),
                ("tool rules", ", ".join(map(str, a["tool_rules"] or [])) or None),
                ("disallowed tools", ", ".join(map(str, a["disallowed_tools"] or [])) or None),
                ("turns", a["turns"]), ("tokens", f"{a['tokens']:,} ({tokens(a['usage'])})"),
                ("started / finished", f"{a['started_at'] or '?'} / {a['finished_at'] or '-'}"),
                ("error", a["error"]), ("final text", a["final_text"])]
        p.add(*(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows
                if v is not None), "</table>")
        p.table(["tool", "allowed by definition", "calls", "ok", "errors", "denied"], [
            _tr(_td(r[0], "mono"), _td(r[1], r[1].split()[0]), *(_num(v) for v in r[2:]))
            for r in tools_rows(a)], empty="No tool calls.")
        if a["activity"]:
            p.add(f"<details><summary>What it did: {plural(len(a['activity']), 'tool call')}"
                  "</summary>")
            p.table(["at", "turn", "tool", "input", "status", "exit", "duration"], [
                _tr(_at(c["at"]), _num(c["turn"]), _td(c["tool"]), _td(c["input"], "mono"),
                    _td(c["status"], c["status"]), _num(c["exit_code"]),
                    _num(secs(c["duration_ms"]) if c["duration_ms"] is not None else None))
                for c in a["activity"]], lazy=True)
            p.add("</details>")
        p.add("</details>")
    p.add("</details></section>")


def _decisions(p: _Page, doc: dict[str, Any]) -> None:
    ds = doc["decisions"]
    p.add(f"<section class=card id=decisions><details open><summary>Denials and approvals "
          f"({len(ds)})</summary>")
    p.table(["at", "agent", "tool", "input", "decision", "rule", "reason", "by"], [
        _tr(_at(d["at"]), _td(d["agent"]), _td(d["tool"]), _td(d["input"], "mono"),
            _td(d["outcome"], d["outcome"]), _td(d["rule"], "mono"), _td(d["reason"]),
            _td(d["by"])) for d in ds])
    p.add("</details></section>")


def _files(p: _Page, doc: dict[str, Any]) -> None:
    fs, diffs = doc["files"], doc["diffs"]
    p.add(f"<section class=card id=files><details><summary>Files changed ({len(fs)} writes, "
          f"{len(diffs)} workspace diffs)</summary>")
    p.table(["at", "agent", "tool", "path", "action", "sha256", "bytes"], [
        _tr(_at(f["at"]), _td(f["agent"]), _td(f["tool"]), _td(f["path"], "mono"),
            _td(f["action"]), _td(f["sha256"], "mono"), _num(f["bytes"])) for f in fs],
        empty="No file changes recorded by the tool calls.", lazy=True)
    if not diffs:
        p.add("<p class=dim>No <code>workspace.diff</code> events in this record.</p>")
    for d in diffs:
        cut = " (shown cut)" if d["patch_shown_truncated"] or d["truncated"] else ""
        p.add(f"<details><summary>diff {_e(d['occurred_at'])} · {_e(d['agent'])} · session "
              f"<code>{_e(d['session'])}</code> · {_e(d['patch_chars'])} chars · sha256 "
              f"<code>{_e(short(d['patch_sha256']))}</code>{cut}{_e(diff_note(d))}</summary>"
              f"<pre class=patch>{_e(d['patch'] or '')}</pre></details>")
    p.add("</details></section>")


def _commands(p: _Page, doc: dict[str, Any]) -> None:
    cs = doc["commands"]
    p.add(f"<section class=card id=commands><details><summary>Commands run ({len(cs)})"
          "</summary>")
    p.table(["at", "agent", "command", "status", "exit", "duration", "output"], [
        _tr(_at(c["at"]), _td(c["agent"]), _td(c["command"], "mono"),
            _td(c["status"] + (" (timed out)" if c["timed_out"] else ""), c["status"]),
            _num(c["exit_code"]), _num(secs(c["duration_ms"])),
            f"<td class=mono>{_e(short(c['output_sha256']))} "
            f"<span class=dim>{_e(c['output_chars'])} chars</span></td>") for c in cs],
        lazy=True)
    p.add("</details></section>")


def _errors(p: _Page, doc: dict[str, Any]) -> None:
    es = doc["errors"]
    p.add(f"<section class=card id=errors><details{' open' if es else ''}><summary>Errors "
          f"({len(es)})</summary>")
    p.table(["at", "agent", "where", "kind", "message"], [
        _tr(_at(e["at"]), _td(e["agent"]), _td(e["where"], "mono"), _td(e["kind"], "error"),
            _td(e["message"], "mono")) for e in es])
    p.add("</details></section>")


def _usage(p: _Page, doc: dict[str, Any]) -> None:
    p.add("<section class=card id=usage><details open><summary>Tokens and cost</summary>")
    p.table(["agent", "sessions", "tokens", "in / out", "cost"], [
        _tr(_td(r["agent"]), _num(r["sessions"]), _num(f"{r['tokens']:,}"),
            _td(tokens(r["usage"])), _num(money(r["cost_usd"])))
        for r in doc["usage"]["by_agent"]])
    p.table(["model", "turns", "tokens", "in / out", "cost"], [
        _tr(_td(r["model"]), _num(r["turns"]), _num(f"{r['tokens']:,}"),
            _td(tokens(r["usage"])), _num(money(r["cost_usd"])))
        for r in doc["usage"]["by_model"]])
    p.add("</details></section>")
