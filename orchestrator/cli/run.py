"""``orchestrail run``: dispatch the backlog's ready tasks to their agents.

Progress goes to stderr (an updating status line on a terminal, plain lines otherwise);
the final summary goes to stdout (``--json``: one object). Exit codes: 0 every task
completed; 1 a task failed or stayed blocked, a run budget stopped the run, the store
failed, or there was nothing ready to run; 2 bad input (nothing written); 130 Ctrl-C
(the run is recorded as cancelled, running tasks released).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from orchestrator.cli.common import Ctx, emit_json, fail, run_async

if TYPE_CHECKING:
    from orchestrator.runner import RunInputError


def exit_bad_input(exc: RunInputError) -> NoReturn:
    """Every preflight problem on its own line, then the error's exit code."""
    for line in exc.problems:
        click.echo(f"orchestrail: error: {line}", err=True)
    sys.exit(exc.code)


@contextlib.contextmanager
def stopping_on_signals(on_stop: Callable[[str], None]) -> Iterator[None]:
    """SIGINT/SIGTERM call ``on_stop(signal name)`` once (a clean stop); a second one
    gets the default behaviour and kills the process. Shared by run, resume, worker."""
    loop = asyncio.get_running_loop()

    def handler(signum: int) -> None:
        loop.remove_signal_handler(signum)
        on_stop(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handler, sig)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@click.command("run")
@click.option("--parallel", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Tasks worked at the same time.")
@click.option("--provider", "provider_name", default="script", show_default=True,
              help="script, anthropic, openai or claude-code.")
@click.option("--script", "script_path", type=click.Path(path_type=Path),
              help="Script provider: one YAML file for every task, a file with a tasks: "
                   "section per task id, or a directory of <task-id>.yaml.")
@click.option("--model", help="Model for every task (default: each agent's model).")
@click.option("--max-turns", type=click.IntRange(min=1), help="Per task: model turns.")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Per task: total tokens.")
@click.option("--max-usd", type=click.FloatRange(min=0), help="Per task: USD.")
@click.option("--run-max-usd", type=click.FloatRange(min=0),
              help="Whole run: stop dispatching once this much is spent.")
@click.option("--run-max-tokens", type=click.IntRange(min=1),
              help="Whole run: stop dispatching once this many tokens are used.")
@click.option("--task-timeout", type=click.FloatRange(min=0, min_open=True), metavar="S",
              help="Per task attempt: wall-clock seconds, then the session is stopped "
                   "(status timeout).")
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="New attempts for a task whose provider kept failing transiently.")
@click.option("--retry-delay", type=click.FloatRange(min=0), default=2.0, show_default=True,
              metavar="S", help="Base of the exponential backoff between attempts.")
@click.option("--model-attempts", type=click.IntRange(min=1), default=5, show_default=True,
              help="Attempts per model call within a session (transient errors, backoff).")
@click.option("--only", multiple=True, metavar="TASK", help="Work only these tasks "
              "(repeatable); their dependencies must be completed or listed too.")
@click.option("--workspace", "workspace_mode", default="auto", show_default=True,
              type=click.Choice(["auto", "worktree", "copy", "none"]),
              help="Per task: git worktree, copied directory, or none (work in place, "
                   "serial only). auto = worktree in a git repository, else copy.")
@click.option("--run-id", help="Id of the new run (default: time-based).")
@click.option("--policy", type=click.Path(dir_okay=False, path_type=Path),
              help="Approval policy file for 'ask' decisions (else they are denied).")
@click.option("--pass-env", multiple=True, metavar="NAME",
              help="Pass this environment variable to the Bash tool (repeatable).")
@click.option("--record-prompts", is_flag=True, help="Store full prompts in model.called.")
@click.option("--lead", "lead", is_flag=False, flag_value="orchestrator", default=None,
              metavar="[AGENT]", help="A lead agent (default: orchestrator) runs the backlog "
              "with the Agent tool instead of the fixed dispatcher; it routes tasks that "
              "have no agent.")
@click.option("--review", "review", is_flag=False, flag_value="reviewer", default=None,
              metavar="[AGENT]", help="A reviewer agent (default: reviewer) accepts or "
              "rejects each completed attempt; a rejection is retried with its feedback "
              "(up to --retries), then fails the task.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
@click.pass_obj
@run_async
async def run(obj: Ctx, parallel: int, provider_name: str, script_path: Path | None,
              model: str | None, max_turns: int | None, max_tokens: int | None,
              max_usd: float | None, run_max_usd: float | None, run_max_tokens: int | None,
              task_timeout: float | None, retries: int, retry_delay: float,
              model_attempts: int, only: tuple[str, ...], workspace_mode: str,
              run_id: str | None, policy: Path | None, pass_env: tuple[str, ...],
              record_prompts: bool, lead: str | None, review: str | None, as_json: bool,
              quiet: bool) -> None:
    """Dispatch the backlog's ready tasks to their agents, in dependency order."""
    from orchestrator.progress import RunProgress, human_tokens, money
    from orchestrator.runner import RunAborted, RunConfig, RunInputError, Runner

    project = Path.cwd().resolve()
    config = RunConfig(
        project=project, provider=provider_name,
        script=script_path.resolve() if script_path else None, model=model,
        parallel=parallel, max_turns=max_turns, max_tokens=max_tokens, max_usd=max_usd,
        run_max_usd=run_max_usd, run_max_tokens=run_max_tokens, task_timeout=task_timeout,
        retries=retries, retry_delay=retry_delay, model_attempts=model_attempts, only=only,
        workspace=workspace_mode, run_id=run_id, policy=policy,
        record_prompts=record_prompts, pass_env=pass_env, lead=lead, review=review)
    progress = RunProgress(quiet=quiet)
    store = await obj.open_store()
    try:
        runner = Runner(store, config, progress=progress, app_config=obj.config())
        try:
            await runner.prepare()
        except RunInputError as exc:
            exit_bad_input(exc)

        def stop(name: str) -> None:
            progress.note(f"run {runner.run_id}: {name}, stopping (running sessions are "
                          "cancelled and their tasks released; again to force)")
            runner.cancel(f"interrupted ({name})")

        try:
            with stopping_on_signals(stop):
                report = await runner.run()
        except RunAborted as exc:
            fail(str(exc))
            return
    finally:
        await store.close()
    if as_json:
        emit_json(report.to_dict())
    else:
        d = report.to_dict()
        click.echo(f"run {report.run_id}: {report.status}"
                   + (f" ({report.reason})" if report.reason else "")
                   + f"; {len(report.completed)} completed, {len(report.failed)} failed, "
                   f"{len(report.blocked)} blocked, {len(report.released)} released, "
                   f"{len(report.not_run)} not run; {report.attempts} attempts, "
                   f"{human_tokens(report.tokens)} tokens, {money(d['cost_usd'])}, "
                   f"{report.duration_s:.1f} s")
        for tid, why in {**report.failed, **report.blocked, **report.released}.items():
            click.echo(f"  {tid}: {why}")
        click.echo(f"next: orchestrail replay {report.run_id}")
    sys.exit(report.exit_code())
