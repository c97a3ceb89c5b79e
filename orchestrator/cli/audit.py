"""``orchestrail audit``: a report for a reviewer of one run or of every run in a window.

The report is built by ``orchestrator.audit`` from the same fold as ``replay`` plus a chain
check of each run's streams; this module only picks the runs and writes the output
(Markdown, JSON or one self-contained HTML page). A file given with ``-o`` is written
whole or not at all.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING

import click

from orchestrator.cli.common import Ctx, fail, run_async, write_output

if TYPE_CHECKING:
    from orchestrator.runs import RunSummary

#: exit status when the report is written but the record fails its integrity check
BROKEN_EXIT = 3


def in_window(run: RunSummary, since: datetime | None, until: datetime | None) -> bool:
    """Did the run overlap [since, until]? (started before the end, still going after the
    start)."""
    start = run.started_at
    end = run.finished_at or run.last_at or start
    if start is None or end is None:
        return False
    return (until is None or start <= until) and (since is None or end >= since)


@click.command()
@click.argument("run", required=False)
@click.option("--last", is_flag=True, help="The newest run (same as RUN = last).")
@click.option("--since", "since_text", metavar="TIME",
              help="Every run active at or after TIME (ISO or an age like 7d).")
@click.option("--until", "until_text", metavar="TIME",
              help="Every run active at or before TIME (ISO or an age like 1h).")
@click.option("--format", "fmt", type=click.Choice(["md", "markdown", "json", "html"]),
              default="md", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write to this file (whole or not at all).")
@click.pass_obj
@run_async
async def audit(obj: Ctx, run: str | None, last: bool, since_text: str | None,
                until_text: str | None, fmt: str, as_json: bool, output: str | None) -> None:
    """A review report of RUN (or --last, or every run in --since/--until): agents, tools
    used versus allowed, denials and approvals, files, commands, errors, cost, timeline,
    and whether the record is intact.

    RUN is a run id, a unique prefix of one, or `last`. With nothing given, the newest run.
    """
    from eventstore.canonical import format_ts
    from orchestrator.audit import load_audit
    from orchestrator.cli.events import parse_time
    from orchestrator.cli.replay import dumps_bytes
    from orchestrator.runs import list_runs, resolve_run

    if as_json:
        fmt = "json"
    window = since_text is not None or until_text is not None
    if window and (run or last):
        raise click.UsageError("give RUN / --last, or --since/--until, not both")
    since = parse_time(since_text, "--since") if since_text else None
    until = parse_time(until_text, "--until") if until_text else None
    if since and until and since > until:
        raise click.BadParameter(f"{since_text} is after {until_text}",
                                 param_hint="--since/--until")
    store = await obj.open_store(create=False)
    try:
        runs = await list_runs(store)
        if window:
            picked = [r.id for r in reversed(runs) if in_window(r, since, until)]
            if not picked:
                fail(f"no runs between {since_text or 'the beginning'} and "
                     f"{until_text or 'now'} ({len(runs)} run(s) in this store; "
                     "`orchestrail runs` lists them)")
            scope = {"runs": picked, "since": format_ts(since) if since else None,
                     "until": format_ts(until) if until else None}
        else:
            run_id = await resolve_run(store, run, last=last or run is None, runs=runs)
            picked, scope = [run_id], {"runs": [run_id], "since": None, "until": None}
        doc = await load_audit(store, picked, scope=scope)
        empty = [r["id"] for r in doc["runs"] if r["events"] == 0 and not
                 r["integrity"]["removed_streams"]]
        if empty and len(empty) == len(picked):
            fail(f"run {', '.join(empty)}: no events")
    finally:
        await store.close()
    if fmt == "json":
        data = dumps_bytes(doc)
    elif fmt == "html":
        from orchestrator.render.audit_html import render_audit_html

        data = render_audit_html(doc).encode()
    else:
        from orchestrator.render.audit_md import render_audit_markdown

        data = render_audit_markdown(doc).encode()
    if not doc["complete"]:
        click.echo(f"orchestrail: warning: the record is incomplete ({len(doc['incomplete'])} "
                   "missing piece(s)); the report shows what is there and lists the gaps",
                   err=True)
    if doc["integrity"]["verdict"] == "broken":
        first = doc["integrity"]["problems"][0]
        click.echo(f"orchestrail: warning: integrity check FAILED: {first['message']}",
                   err=True)
    write_output(data + b"\n", output)
    if doc["integrity"]["verdict"] == "broken":
        sys.exit(BROKEN_EXIT)

