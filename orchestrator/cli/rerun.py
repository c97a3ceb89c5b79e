"""``orchestrail rerun RUN``: execute a recorded run again, stop at the first divergence.

The work is in ``orchestrator.rerun``; this module parses options, prints the report and
sets the exit code: 0 no divergence (a fork: and its live part completed), 1 divergence
(or the fork's live part did not complete), 2 bad input (unknown run, a run retention
cut, a session that cannot be executed again, bad options).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from orchestrator.cli.common import Ctx, emit_json, fail, resolve_run_or_fail, run_async


def _progress(kind: str, data: dict[str, Any]) -> None:
    from orchestrator.progress import event_line

    line = event_line(kind, data)
    if line is not None:
        click.echo(line, err=True)


def _indent(lines: list[str], pad: str = "      ") -> str:
    return "\n".join(pad + ln for ln in lines)


def render_text(report: dict[str, Any], origin: str) -> str:
    """The report for a person: what ran, what could not be reproduced, what differed."""
    from orchestrator.outcomes import outcome_text as _outcome
    from orchestrator.progress import tool_subject

    kind = "fork" if report.get("forked_from") else "rerun"
    out = [f"{kind} of run {origin} recorded as run {report['run_id']}"]
    if report.get("live_from"):
        lf = report["live_from"]
        out.append(f"  live from turn {lf['turn']} ({lf.get('provider') or 'live'})")
    for part in report["sessions"]:
        ws = part["workspace"]
        via = part.get("via") or {}
        how = ""
        if via.get("kind") == "agent_call":
            task = (f", task {via['task_id']} attempt {via.get('attempt')}"
                    if via.get("task_id") else "")
            how = f" [Agent call {via['tool_use_id']} of {str(via['caller'])[:13]}…{task}]"
        elif via.get("kind") == "review":
            how = f" [review of {str(via['of'])[:13]}…]"
        out.append(f"  session {part['recorded_session']} ({part['agent']}) -> "
                   f"{part['session']}: {part['status']}{how}")
        out.append(f"    started from {ws['how']}")
        out.append(f"    scratch workspace {ws['workspace']}"
                   + (" (removed)" if ws.get("removed") else " (kept)"))
        for note in ws.get("notes") or []:
            out.append(f"    cannot reproduce: {note}")
        out.append(f"    {part['turns_replayed']} turn(s) served from the recording"
                   + (f", {part['turns_live']} live" if part["turns_live"] else "")
                   + f"; {part['tool_calls_compared']} tool call(s) executed and compared")
        if part.get("end_of_recording"):
            out.append(f"    {part['end_of_recording']['message']}")
    for note in report["notes"]:
        out.append(f"  note: turn {note['turn']}, {note['tool']} "
                   f"{tool_subject(note['input'])[:80]}: output differs, same outcome "
                   f"({_outcome(note['now'])}); not a divergence")
        if note.get("output_diff"):
            out.append(_indent(note["output_diff"][:12]))
    div = report.get("divergence")
    if div is None:
        out.append("no divergence: every recorded turn was served and every tool call "
                   "ended as recorded" if kind == "rerun" else
                   "no divergence before the live turn")
        return "\n".join(out)
    out.append(f"DIVERGENCE in session {div['session']} ({div['agent']}), turn {div['turn']}")
    if div["kind"] == "tool_result":
        out.append(f"  tool call {div['tool_use_id']}: {div['tool']} "
                   f"{tool_subject(div['input'])[:100]}")
        out.append(f"    recorded: {_outcome(div['recorded'])}")
        out.append(f"    now:      {_outcome(div['now'])}")
        if div.get("output_diff"):
            out.append("    output:")
            out.append(_indent(div["output_diff"]))
    else:
        out.append(f"  {div['message']}")
    out.append(f"compare the runs: orchestrail diff {origin} {report['run_id']}")
    return "\n".join(out)


@click.command()
@click.argument("run", required=False)
@click.option("--last", is_flag=True, help="The newest run (same as RUN = last).")
@click.option("--workspace", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Start from this directory as it is now (copied into the scratch "
                   "workspace; DIR is not touched) instead of the recorded git commit.")
@click.option("--live-from", "live_from", metavar="[SESSION:]TURN",
              help="Fork: serve recorded turns before TURN, ask --provider from TURN on.")
@click.option("--provider", "provider_name", help="Live provider of a fork: script, "
              "anthropic, openai.")
@click.option("--script", "script_path", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML model turns for --provider script.")
@click.option("--strict", is_flag=True,
              help="Outputs that differ after normalisation are divergences too.")
@click.option("--keep/--no-keep", default=None,
              help="Keep the scratch workspace (default: only after a divergence).")
@click.option("--run-id", help="Run id of the rerun (default: rerun-<uuid>).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
@run_async
async def rerun(obj: Ctx, run: str | None, last: bool, workspace: Path | None,
                live_from: str | None, provider_name: str | None, script_path: Path | None,
                strict: bool, keep: bool | None, run_id: str | None, as_json: bool) -> None:
    """Execute RUN again: recorded model turns, tools for real in a scratch workspace.

    Stops at the first divergence (a tool call whose outcome differs, or a conversation
    no recorded turn answers) and reports it. The rerun is recorded as a new run.
    """
    from agents.providers import get_provider
    from agents.providers.base import ProviderError
    from orchestrator.rerun import RerunError, RerunOptions, Step
    from orchestrator.rerun import rerun as do_rerun

    step = None
    live = None
    try:
        if live_from is not None:
            step = Step.parse(live_from)
            if not provider_name:
                fail("--live-from needs --provider (the live model after the fork)", 2)
            if provider_name == "replay":
                fail("--provider replay cannot be the live part of a fork", 2)
            if provider_name == "script" and script_path is None:
                fail("--provider script needs --script FILE", 2)
            live_args = (script_path,) if provider_name == "script" else ()
            name = str(provider_name)
            get_provider(name, *live_args)  # fail now on a bad file, not mid-run

            def live() -> Any:
                return get_provider(name, *live_args)
        elif provider_name or script_path:
            fail("--provider/--script go with --live-from", 2)
    except (RerunError, ProviderError) as exc:
        fail(str(exc), 2)
    store = await obj.open_store(create=False)
    try:
        origin = await resolve_run_or_fail(store, run, last=last)
        opts = RerunOptions(workspace=workspace, live_from=step, live=live,
                            live_name=provider_name, strict=strict, keep=keep, run_id=run_id,
                            on_progress=None if as_json else _progress, config=obj.config())
        try:
            report = await do_rerun(store, origin, opts)
        except RerunError as exc:
            fail(str(exc), 2)
            return
    finally:
        await store.close()
    if as_json:
        emit_json(report)
    else:
        click.echo(render_text(report, origin))
    failed_live = step is not None and any(
        p["turns_live"] and p["status"] != "completed" for p in report["sessions"])
    sys.exit(1 if report["divergence"] is not None or failed_live else 0)
