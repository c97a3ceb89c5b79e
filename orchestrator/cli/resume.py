"""``orchestrail resume RUN``: finish a run that crashed or was stopped (Ctrl-C).

RUN is a run id, a unique prefix, or ``--last``. A run started by ``orchestrail run`` is
continued by the same dispatcher (``orchestrator.resume.ResumeRunner``); a run that is one
standalone session (``orchestrail agents run``) has that session resumed. What happens to
each task and session: see ``orchestrator/resume.py`` and docs/resume.md.

Exit codes: 0 the run is (now) completed; 1 it ended otherwise (a task failed, a run that
already finished failed and has nothing left to resume, another process holds it), 2 bad
input; 130 Ctrl-C (recorded as cancelled; resume again later).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli.common import Ctx, emit_json, fail, resolve_run_or_fail, run_async

if TYPE_CHECKING:
    from eventstore.base import EventStore
    from orchestrator.fold import RunState
    from orchestrator.resume import Plan

#: Run endings after which there can still be work to finish.
STOPPED = ("cancelled",)


@click.command("resume")
@click.argument("run_ref", metavar="RUN", required=False)
@click.option("--last", is_flag=True, help="Resume the newest run.")
@click.option("--provider", "provider_name",
              help="Model provider to continue with (default: the one the run used).")
@click.option("--script", "script_path", type=click.Path(path_type=Path),
              help="Script provider: the script(s) the run used (file or directory).")
@click.option("--model", help="Model override (default: as recorded).")
@click.option("--parallel", "-j", type=click.IntRange(min=1),
              help="Tasks worked at the same time (default: as recorded).")
@click.option("--policy", type=click.Path(dir_okay=False, path_type=Path),
              help="Approval policy file for 'ask' decisions.")
@click.option("--dry-run", is_flag=True, help="Show what would be resumed; change nothing.")
@click.option("--force", is_flag=True,
              help="Resume even though the process that ran it still looks alive.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
@click.pass_obj
@run_async
async def resume(obj: Ctx, run_ref: str | None, last: bool, provider_name: str | None,
                 script_path: Path | None, model: str | None, parallel: int | None,
                 policy: Path | None, dry_run: bool, force: bool, as_json: bool,
                 quiet: bool) -> None:
    """Finish RUN after a crash or Ctrl-C, without redoing recorded work."""
    from orchestrator.cli.replay import load_run
    from orchestrator.resume import plan, process_alive

    store = await obj.open_store(create=False)
    try:
        run_id = await resolve_run_or_fail(store, run_ref, last=last)
        state = await load_run(store, run_id)
        p = plan(state)
        if dry_run:
            _print_plan(p, state, as_json)
            return
        if state.has_run_stream and state.config and process_alive(state.config) \
                and not force:
            fail(f"run {run_id} is still running (pid {state.config.get('pid')} on this "
                 "host); stop it first, or pass --force if that process is not orchestrail's")
        code = _finished_code(p, state, as_json)
        if code is not None:
            sys.exit(code)
        overrides: dict[str, Any] = {
            "provider": provider_name, "script": script_path.resolve() if script_path
            else None, "model": model, "parallel": parallel, "policy": policy}
        if state.has_run_stream:
            code = await _resume_run(obj, store, state, overrides, as_json, quiet)
        else:
            code = await _resume_sessions(obj, store, p, overrides, as_json, force)
    finally:
        await store.close()
    sys.exit(code)


def _finished_code(p: Plan, state: RunState, as_json: bool) -> int | None:
    """A run that ended by itself is reported, not resumed: exit 0 when it completed, 1
    otherwise. A run stopped from outside (Ctrl-C, a store failure) is resumed."""
    reason = str((state.recorded_totals or {}).get("reason") or "")
    if state.has_run_stream:
        if state.finished_at is None or p.status in STOPPED or reason.startswith(
                "store failed"):
            return None
    elif p.to_resume():
        return None
    msg = (f"run {p.run_id} already finished: {p.status}{f' ({reason})' if reason else ''}; "
           "nothing to resume")
    if p.status != "completed":
        msg += " (its failed tasks are final: `orchestrail run` starts a new attempt)"
    if as_json:
        emit_json({"run_id": p.run_id, "status": p.status, "resumed": False,
                   "message": msg})
    else:
        click.echo(msg)
    return 0 if p.status == "completed" else 1


def _print_plan(p: Plan, state: RunState, as_json: bool) -> None:
    if as_json:
        emit_json({"run_id": p.run_id, "status": p.status, "finished": p.finished,
                   "has_run_stream": p.has_run_stream,
                   "tasks": {t.id: t.status for t in state.tasks.values()},
                   "sessions": [s.to_dict() for s in p.sessions]})
        return
    click.echo(f"run {p.run_id}: {p.status}{' (finished)' if p.finished else ''}")
    for s in p.sessions:
        task = f" task {s.task_id}" if s.task_id else ""
        click.echo(f"  session {s.session_id}{task} ({s.agent}): {s.status} -> {s.action}"
                   f"{f': {s.reason}' if s.reason else ''}")


async def _resume_run(obj: Ctx, store: EventStore, state: RunState,
                      overrides: dict[str, Any], as_json: bool, quiet: bool) -> int:
    from orchestrator.cli.run import exit_bad_input, stopping_on_signals
    from orchestrator.progress import RunProgress, human_tokens, money
    from orchestrator.resume import ResumeRunError, ResumeRunner
    from orchestrator.runner import RunAborted, RunInputError

    progress = RunProgress(quiet=quiet)
    try:
        runner = ResumeRunner(store, state, overrides, progress=progress,
                              app_config=obj.config())
        await runner.prepare()
    except ResumeRunError as exc:
        fail(str(exc))
        return 1
    except RunInputError as exc:
        exit_bad_input(exc)

    def stop(name: str) -> None:
        progress.note(f"run {runner.run_id}: {name}, stopping (resume again later; again "
                      "to force)")
        runner.cancel(f"interrupted ({name})")

    try:
        with stopping_on_signals(stop):
            report = await runner.run()
    except ResumeRunError as exc:
        fail(str(exc))
        return 1
    except RunAborted as exc:
        fail(f"{exc}; resume again when the store is back")
        return 1
    d = report.to_dict()
    d["resumed"] = [{"task_id": t.id, "action": how, "session_id": sid}
                    for t, how, sid in runner.takeover] + runner.lead_takeover
    if as_json:
        emit_json(d)
    else:
        click.echo(f"run {report.run_id} resumed: {report.status}"
                   + (f" ({report.reason})" if report.reason else "")
                   + f"; {len(report.completed)} completed, {len(report.failed)} failed, "
                   f"{len(report.blocked)} blocked, {len(report.released)} released; "
                   f"{sum(h == 'resume' for _, h, _ in runner.takeover)} session(s) resumed, "
                   f"{report.attempts} attempt(s), {human_tokens(report.tokens)} tokens, "
                   f"{money(d['cost_usd'])}")
        for tid, why in {**report.failed, **report.blocked, **report.released}.items():
            click.echo(f"  {tid}: {why}")
        click.echo(f"next: orchestrail replay {report.run_id}")
    return report.exit_code()


async def _resume_sessions(obj: Ctx, store: EventStore, p: Plan, overrides: dict[str, Any],
                           as_json: bool, force: bool) -> int:
    """A run without a run stream (``agents run``): resume its unfinished sessions."""
    from agents.approval import make_approver
    from agents.discovery import load_agents
    from agents.errors import AgentError
    from agents.models import ModelCatalog
    from agents.providers import get_provider
    from agents.providers.base import ProviderError
    from agents.resume import ResumeError, load_session
    from orchestrator.progress import event_line
    from orchestrator.resume import process_alive, resumed_session

    def progress(kind: str, data: dict[str, Any]) -> None:
        line = event_line(kind, data)
        if line is not None:
            click.echo(line, err=True)

    catalog = ModelCatalog.from_config(obj.config())
    results = []
    for sp in p.to_resume():
        try:
            log = await load_session(store, sp.session_id)
            if process_alive(log.started) and not force:
                fail(f"session {log.session_id} is still running (pid "
                     f"{log.started.get('pid')} on this host); stop it first, or pass "
                     "--force if that process is not orchestrail's")
            ws = Path(log.workspace or ".")
            definition = load_agents(ws).get(log.agent)
            name = overrides["provider"] or str(log.started.get("provider") or "script")
            if name == "script":
                if overrides["script"] is None:
                    fail(f"session {log.session_id} used the script provider: give the same "
                         "--script FILE to resume it", 2)
                provider = get_provider("script", overrides["script"])
            else:
                provider = get_provider(name)
            approver = make_approver(policy=overrides["policy"], workspace=ws)
            session = resumed_session(store, log, definition, provider, provider_name=name,
                                      model=overrides["model"], approver=approver,
                                      cost_fn=catalog.cost, on_progress=progress)
        except (AgentError, ProviderError, ResumeError) as exc:
            fail(str(exc))
            return 1
        click.echo(f"session {log.session_id}: resuming {log.agent} at turn {log.turns} "
                   f"({len(log.pending)} tool call(s) left open) on {name}", err=True)
        try:
            results.append(await session.run(resume=log))
        finally:
            await provider.aclose()
    ok = all(r.ok for r in results)
    if as_json:
        emit_json({"run_id": p.run_id, "status": "completed" if ok else "failed",
                   "resumed": True, "sessions": [r.to_dict() for r in results]})
    else:
        for r in results:
            click.echo(f"{r.status}: {r.turns} turns, {r.tool_calls} tool calls, "
                       f"{r.denials} denied; session {r.session_id} (resumed)")
            if r.error:
                click.echo(f"error: {r.error}")
    return 0 if ok else 1
