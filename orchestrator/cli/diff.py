"""``orchestrail diff RUN_A RUN_B``: where two runs of the same work differ.

Like diff(1): exit 0 when the runs are the same (ids, times and durations aside), 1 when
they differ, 2 for bad input (an unknown run id). The comparison is
``orchestrator.rundiff``; this module prints it.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from orchestrator.cli.common import Ctx, emit_json, resolve_run_or_fail, run_async


def _val(field: str, v: Any) -> str:
    if v is None:
        return "-"
    if field == "cost_usd" and isinstance(v, int | float):
        return f"${v:.4f}"
    if field == "tokens" and isinstance(v, int):
        return f"{v:,}"
    text = str(v).replace("\n", " ")
    return text if len(text) <= 60 else text[:59] + "…"


def _fields(fields: list[dict[str, Any]]) -> str:
    return "; ".join(f"{f['field']} {_val(f['field'], f['a'])} -> {_val(f['field'], f['b'])}"
                     for f in fields)


def render_text(doc: dict[str, Any]) -> str:
    from orchestrator.outcomes import outcome_text as _outcome
    from orchestrator.progress import tool_subject

    a, b = doc["a"], doc["b"]
    head = f"runs {a['run_id']} (a) and {b['run_id']} (b)"
    out: list[str] = []
    for side, s in (("a", a), ("b", b)):
        if s["incomplete"]:
            out.append(f"  note: run {side} is incomplete "
                       f"({'; '.join(str(i.get('reason')) for i in s['incomplete'][:3])}); "
                       "compared what remains")
    if doc["identical"]:
        calls = a["tool_calls"]
        return "\n".join([f"{head} are the same: {a['sessions']} session(s), {calls} tool "
                          "call(s) with the same outcomes and outputs (ids, times and "
                          "durations aside)", *out])
    out.insert(0, f"{head} differ")
    if doc["run"]:
        out.append(f"  run: {_fields(doc['run'])}")
    for t in doc["tasks"]:
        if t["op"] == "changed":
            out.append(f"  task {t['task']}: {_fields(t['fields'])}")
        else:
            out.append(f"  task {t['task']}: only in {t['op'][-1]}")
    for s in doc["sessions"]:
        if s["op"].startswith("only"):
            side = s["op"][-1]
            out.append(f"  session {s[side]} ({s['agent']}): only in {side}")
            continue
        if s["op"] == "same":
            out.append(f"  session {s['agent']} {s['a']} / {s['b']}: same")
            continue
        out.append(f"  session {s['agent']} {s['a']} (a) / {s['b']} (b)")
        if s["fields"]:
            out.append(f"    {_fields(s['fields'])}")
        if s["same_tool_calls"]:
            out.append(f"    = {s['same_tool_calls']} tool call(s) the same")
        for c in s["tool_calls"]:
            what = f"{c['tool']} {tool_subject(c['input'])[:80]}".rstrip()
            if c["op"] == "changed":
                out.append(f"    ~ {what}: {_outcome(c['a'])} -> {_outcome(c['b'])}"
                           + ("" if c["difference"] == "outcome" else
                              f" ({c['difference']} differs)"))
                out += [f"        {ln}" for ln in c.get("output_diff") or []]
            else:
                side = c["op"][-1]
                out.append(f"    {'-' if side == 'a' else '+'} {what}: "
                           f"{_outcome(c[side])} (only in {side})")
    return "\n".join(out)


@click.command()
@click.argument("run_a")
@click.argument("run_b")
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON.")
@click.pass_obj
@run_async
async def diff(obj: Ctx, run_a: str, run_b: str, as_json: bool) -> None:
    """Where RUN_A and RUN_B differ: tasks, sessions, tool calls, outcomes, tokens, cost.

    Each is a run id, a unique prefix, or `last`. Exit 0: the same; 1: they differ.
    """
    from orchestrator.rundiff import diff_runs
    from orchestrator.runs import list_runs

    store = await obj.open_store(create=False)
    try:
        runs = await list_runs(store)
        a = await resolve_run_or_fail(store, run_a, runs=runs)
        b = await resolve_run_or_fail(store, run_b, runs=runs)
        doc = await diff_runs(store, a, b)
    finally:
        await store.close()
    if as_json:
        emit_json(doc)
    else:
        click.echo(render_text(doc))
    sys.exit(0 if doc["identical"] else 1)
