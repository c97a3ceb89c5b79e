"""``orchestrail runs``: the runs in the store, newest first, without folding any of them."""

from __future__ import annotations

from datetime import datetime

import click

from orchestrator.cli.common import Ctx, emit_json, run_async


@click.command()
@click.option("--status", "statuses", multiple=True,
              help="Only runs with this status (repeatable): completed, failed, running, …")
@click.option("--since", help="Started at or after this (ISO time or age like 2h, 7d).")
@click.option("--agent", "agents", multiple=True, help="Only runs that used this agent.")
@click.option("--limit", type=int, default=50, show_default=True,
              help="At most this many runs (0 = all).")
@click.option("--last", "last", is_flag=True, help="Only the newest run.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@click.pass_obj
@run_async
async def runs(obj: Ctx, statuses: tuple[str, ...], since: str | None,
               agents: tuple[str, ...], limit: int, last: bool, as_json: bool) -> None:
    """List runs: id, started, status, agents, tasks, events, duration, tokens, cost."""
    from orchestrator.cli.events import parse_time
    from orchestrator.render.text import money, secs
    from orchestrator.runs import list_runs

    cutoff: datetime | None = parse_time(since, "--since") if since else None
    store = await obj.open_store(create=False)
    try:
        found = await list_runs(store)
    finally:
        await store.close()
    rows = []
    for r in found:
        d = r.to_dict()
        if statuses and d["status"] not in statuses:
            continue
        if agents and not set(agents) & set(d["agents"]):
            continue
        if cutoff and (r.started_at is None or r.started_at < cutoff):
            continue
        rows.append(d)
    if last:
        rows = rows[:1]
    elif limit:
        rows = rows[:limit]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no runs" + (" match" if statuses or agents or since else " yet"), err=True)
        return
    click.echo(f"{'RUN':<28} {'STARTED':<19} {'STATUS':<10} {'TASKS':>5} {'EVENTS':>7} "
               f"{'DURATION':>8} {'TOKENS':>9} {'COST':>9}  AGENTS")
    for d in rows:
        started = (d["started_at"] or "?")[:19].replace("T", " ")
        status = d["status"] + ("*" if d["incomplete"] else "")
        click.echo(f"{d['id']:<28} {started:<19} {status:<10} {d['tasks']:>5} "
                   f"{d['events']:>7,} {secs(d['duration_ms']):>8} {d['tokens']:>9,} "
                   f"{money(d['cost_usd']):>9}  {', '.join(d['agents'])}")
    if any(d["incomplete"] for d in rows):
        click.echo("* some of the run's streams were removed by retention", err=True)
