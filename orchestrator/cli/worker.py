"""``orchestrail worker``: claim and work tasks from a shared store until stopped.

The options that shape an attempt (provider, script, model, budgets per task, timeout,
retries, workspace, policy...) are ``orchestrail run``'s own, taken from that command so
the two never drift. Progress goes to stderr, the summary to stdout (``--json``: one
object). Exit codes: 0 the worker stopped as asked (idle, ``--max-tasks``, ``--once``,
SIGTERM/SIGINT); 1 the store failed or a run budget stopped it; 2 bad input (nothing
written).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from orchestrator.cli.common import Ctx, emit_json, fail, run_async
from orchestrator.cli.run import exit_bad_input, stopping_on_signals
from orchestrator.cli.run import run as run_command

#: ``orchestrail run`` options a worker shares (by parameter name).
SHARED = ("parallel", "provider_name", "script_path", "model", "max_turns", "max_tokens",
          "max_usd", "run_max_usd", "run_max_tokens", "task_timeout", "retries",
          "retry_delay", "model_attempts", "workspace_mode", "policy", "pass_env",
          "record_prompts", "quiet")


@click.command("worker")
@click.option("--id", "name", metavar="NAME",
              help="This worker's name (default: <host>-<pid>); its run is "
                   "worker-NAME-<time>.")
@click.option("--lease", type=click.FloatRange(min=0, min_open=True), default=60.0,
              show_default=True, metavar="S",
              help="Seconds a claim lasts without a heartbeat; then another worker may "
                   "take the task over.")
@click.option("--heartbeat", type=click.FloatRange(min=0, min_open=True), metavar="S",
              help="Seconds between lease renewals (default: lease / 3).")
@click.option("--max-tasks", type=click.IntRange(min=1), metavar="N",
              help="Exit after starting N attempts (and finishing them).")
@click.option("--idle-exit", type=click.FloatRange(min=0), metavar="S",
              help="Exit after S seconds with nothing to claim (default: wait for work).")
@click.option("--once", is_flag=True,
              help="Work what is claimable now, then exit (= --idle-exit 0).")
@click.option("--run-id", help="Id of the worker's run (default: worker-NAME-<time>).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.pass_obj
@run_async
async def worker(obj: Ctx, name: str | None, lease: float, heartbeat: float | None,
                 max_tasks: int | None, idle_exit: float | None, once: bool,
                 run_id: str | None, as_json: bool, **shared: Any) -> None:
    """Claim ready tasks from the store and work them; take over tasks whose worker died.

    Every task completes exactly once however many workers run; SIGTERM or Ctrl-C
    releases the running task and exits."""
    from orchestrator.progress import RunProgress, human_tokens
    from orchestrator.runner import RunAborted, RunConfig, RunInputError
    from orchestrator.worker import Worker, WorkerConfig, default_name

    if once and idle_exit is not None:
        fail("--once and --idle-exit exclude each other (--once is --idle-exit 0)", 2)
    script: Path | None = shared["script_path"]
    config = RunConfig(
        project=Path.cwd().resolve(), provider=shared["provider_name"],
        script=script.resolve() if script else None, model=shared["model"],
        parallel=shared["parallel"], max_turns=shared["max_turns"],
        max_tokens=shared["max_tokens"], max_usd=shared["max_usd"],
        run_max_usd=shared["run_max_usd"], run_max_tokens=shared["run_max_tokens"],
        task_timeout=shared["task_timeout"], retries=shared["retries"],
        retry_delay=shared["retry_delay"], model_attempts=shared["model_attempts"],
        workspace=shared["workspace_mode"], run_id=run_id, policy=shared["policy"],
        record_prompts=shared["record_prompts"], pass_env=shared["pass_env"])
    wcfg = WorkerConfig(name=name or default_name(), lease=lease, heartbeat=heartbeat,
                        max_tasks=max_tasks, idle_exit=0.0 if once else idle_exit)
    problems = wcfg.problems()
    if problems:  # before the store is opened: nothing is created or written
        exit_bad_input(RunInputError(problems))
    progress = RunProgress(quiet=shared["quiet"])
    store = await obj.open_store()
    try:
        w = Worker(store, config, wcfg, progress=progress, app_config=obj.config())
        try:
            await w.prepare()
        except RunInputError as exc:
            await w.aclose()
            exit_bad_input(exc)

        def stop(sig: str) -> None:
            progress.note(f"worker {wcfg.name}: {sig}, stopping (running tasks are "
                          "released for other workers; again to force)")
            w.cancel(f"interrupted ({sig})")

        try:
            with stopping_on_signals(stop):
                report = await w.run()
        except RunAborted as exc:
            fail(str(exc))
            return
    finally:
        await store.close()
    assert isinstance(report, type(w.report))
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(f"worker {wcfg.name} (run {report.run_id}): {report.status}"
                   + (f" ({report.reason})" if report.reason else "")
                   + f"; {len(report.completed)} completed, {len(report.failed)} failed, "
                   f"{len(report.released)} released, {len(report.took_over)} taken over, "
                   f"{len(report.lost)} lost; {report.attempts} attempts, "
                   f"{human_tokens(report.tokens)} tokens, {report.duration_s:.1f} s")
        for tid, why in {**report.failed, **report.released, **report.lost}.items():
            click.echo(f"  {tid}: {why}")
        click.echo(f"next: orchestrail replay {report.run_id}")
    sys.exit(report.exit_code())


worker.params.extend(p for p in run_command.params if p.name in SHARED)
