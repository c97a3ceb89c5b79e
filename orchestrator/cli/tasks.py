"""``orchestrail task``: add, list, show, ready and import backlog tasks.

Exit codes: 0 ok; 1 a store or state problem (unknown task, store unreachable); 2 bad
input (a task file or option that fails validation). Validation errors print one line
each (``orchestrail: error: FILE:LINE: ...``) and nothing is appended.
"""

from __future__ import annotations

import functools
import getpass
import re
import sys
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli.common import Ctx, emit_json, fail, run_async

if TYPE_CHECKING:
    from orchestrator.backlog import Backlog, ImportReport, TaskSpec, TaskState

STATUS_CHOICES = ("ready", "blocked", "open", "claimed", "completed", "failed", "cancelled")


def backlog_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Backlog errors as one-line messages: validation -> exit 2, state/lookup -> exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from orchestrator.backlog import BacklogError, TaskValidationError

        try:
            return fn(*args, **kwargs)
        except TaskValidationError as exc:
            for problem in exc.problems[:-1]:
                click.echo(f"orchestrail: error: {problem}", err=True)
            fail(exc.problems[-1], 2)
        except BacklogError as exc:
            fail(str(exc), 1)
        return None

    return wrapper


def _actor() -> str:
    from eventstore.canonical import ACTOR_RE

    try:
        actor = f"user:{getpass.getuser()}"
    except (KeyError, OSError):
        return "user"
    return actor if ACTOR_RE.match(actor) else "user"


def _known_agents(specs: Sequence[TaskSpec]) -> Collection[str] | None:
    """Discovered agent names for the current project, loaded only if a task names one."""
    if not any(s.agent for s in specs):
        return None
    from agents.discovery import load_agents

    return load_agents(Path.cwd().resolve()).names()


async def _open(obj: Ctx, create: bool = False) -> tuple[Any, Backlog]:
    from orchestrator.backlog import Backlog

    store = await obj.open_store(create=create)
    return store, await Backlog.load(store, actor=_actor())


async def _existing_or_empty(obj: Ctx) -> tuple[Any, Backlog, bool]:
    """The configured store's backlog, or an empty in-memory one when no store exists yet
    (so validation can run before a store is created: bad input leaves no trace)."""
    from eventstore.errors import StoreError
    from eventstore.urls import open_store
    from orchestrator.backlog import Backlog

    try:
        store, backlog = await _open(obj, create=False)
        return store, backlog, True
    except StoreError:
        empty = await open_store("memory://")
        return empty, Backlog(empty, actor=_actor()), False


async def _validated(obj: Ctx, specs: Sequence[TaskSpec], known: Collection[str] | None,
                     dry_run: bool) -> tuple[Any, Backlog]:
    """Validate against the current backlog, then open (creating if needed) to write."""
    from orchestrator.backlog import TaskValidationError

    store, backlog, exists = await _existing_or_empty(obj)
    if exists or dry_run:
        return store, backlog
    async with store:
        problems = backlog.validate(specs, known)
    if problems:
        raise TaskValidationError(problems)
    return await _open(obj, create=True)


def _row(backlog: Backlog, t: TaskState) -> str:
    deps = f"  after {','.join(t.depends_on)}" if t.depends_on else ""
    return (f"{t.id:<24} {backlog.display_status(t):<10} p{t.priority}  "
            f"{(t.agent or '-'):<20} {t.title}{deps}")


@click.group()
def task() -> None:
    """The backlog: tasks with dependencies and priorities, stored as task-* streams."""


@task.command("add")
@click.argument("title")
@click.option("--prompt", default=None, help="What the agent is asked to do (default: TITLE).")
@click.option("--agent", default=None, help="Subagent to run it (default: the lead routes it).")
@click.option("--depends-on", "depends_on", multiple=True, metavar="ID",
              help="A task that must complete first (repeatable).")
@click.option("--priority", type=int, default=2, show_default=True,
              help="Lower runs first (0 most urgent).")
@click.option("--id", "task_id", default=None, help="Task id (default: from the title).")
@click.option("--criterion", "criteria", multiple=True, help="An acceptance criterion.")
@click.option("--label", "labels", multiple=True, help="A label (repeatable).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@backlog_errors
@run_async
async def add_cmd(obj: Ctx, title: str, prompt: str | None, agent: str | None,
                  depends_on: tuple[str, ...], priority: int, task_id: str | None,
                  criteria: tuple[str, ...], labels: tuple[str, ...], as_json: bool) -> None:
    """Add one task."""
    from pydantic import ValidationError

    from orchestrator.backlog import TaskSpec, TaskValidationError

    store, backlog, _ = await _existing_or_empty(obj)
    async with store:
        if task_id is None:
            base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:48] or "task"
            task_id, n = base, 1
            while task_id in backlog:
                n += 1
                task_id = f"{base}-{n}"
        elif task_id in backlog:
            raise TaskValidationError([f"task {task_id!r}: duplicate id (already in the backlog)"])
    try:
        spec = TaskSpec(id=task_id, title=title, prompt=prompt or title, agent=agent,
                        depends_on=depends_on, priority=priority,
                        acceptance_criteria=criteria, labels=labels,
                        source={"kind": "cli"}, origin="task add")
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise TaskValidationError([f"task add: {key}: "
                                   f"{str(err['msg']).removeprefix('Value error, ')}"]) from None
    known = _known_agents([spec])
    store, backlog = await _validated(obj, [spec], known, False)
    async with store:
        await backlog.add([spec], known_agents=known)
        state = backlog.get(task_id)
        if as_json:
            emit_json(state.to_json(backlog.display_status(state)))
        else:
            click.echo(f"added {task_id} ({backlog.display_status(state)})")


def _matches(backlog: Backlog, t: TaskState, statuses: tuple[str, ...]) -> bool:
    if not statuses:
        return True
    shown = backlog.display_status(t)
    return shown in statuses or ("open" in statuses and t.status == "open")


@task.command("list")
@click.option("--status", "statuses", multiple=True, type=click.Choice(STATUS_CHOICES),
              help="Only these (repeatable; open = ready + blocked).")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of tasks.")
@click.pass_obj
@backlog_errors
@run_async
async def list_cmd(obj: Ctx, statuses: tuple[str, ...], as_json: bool) -> None:
    """Every task in creation order."""
    store, backlog = await _open(obj)
    async with store:
        rows = [t for t in backlog.tasks() if _matches(backlog, t, statuses)]
        if as_json:
            emit_json([t.to_json(backlog.display_status(t)) for t in rows])
        elif not rows:
            click.echo("no tasks" + (f" with status {', '.join(statuses)}" if statuses else ""),
                       err=True)
        for t in [] if as_json else rows:
            click.echo(_row(backlog, t))


@task.command("ready")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@backlog_errors
@run_async
async def ready_cmd(obj: Ctx, as_json: bool) -> None:
    """Tasks whose dependencies are all completed, in dispatch order (priority, creation)."""
    store, backlog = await _open(obj)
    async with store:
        rows = backlog.ready()
        if as_json:
            emit_json([t.to_json("ready") for t in rows])
            return
        if not rows:
            click.echo("no ready tasks", err=True)
        for t in rows:
            click.echo(_row(backlog, t))


@task.command("show")
@click.argument("task_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="The task and its events as JSON.")
@click.pass_obj
@backlog_errors
@run_async
async def show_cmd(obj: Ctx, task_id: str, as_json: bool) -> None:
    """One task: its fields, its prompt and its event history."""
    store, backlog = await _open(obj)
    async with store:
        t = backlog.get(task_id)
        history = await backlog.history(task_id)
        if as_json:
            emit_json({**t.to_json(backlog.display_status(t)),
                       "events": [ev.to_json_dict() for ev in history]})
            return
        click.echo(f"{t.id}: {t.title}")
        click.echo(f"  status:   {backlog.display_status(t)}"
                   + (f" by {t.worker} until {t.lease_until:%Y-%m-%d %H:%M:%S}"
                      if t.status == "claimed" and t.lease_until else ""))
        click.echo(f"  agent:    {t.agent or '(lead routes it)'}")
        click.echo(f"  priority: {t.priority}")
        if t.depends_on:
            deps = ", ".join(f"{d} ({backlog.display_status(backlog.get(d))})"
                             if d in backlog else d for d in t.depends_on)
            click.echo(f"  after:    {deps}")
        if t.labels:
            click.echo(f"  labels:   {', '.join(t.labels)}")
        if t.source:
            where = t.source.get("file") or t.source.get("kind")
            line = t.source.get("line")
            click.echo(f"  source:   {where}{f':{line}' if line else ''}")
        if t.acceptance_criteria:
            click.echo("  acceptance criteria:")
            for c in t.acceptance_criteria:
                click.echo(f"    - {c}")
        if t.error:
            click.echo(f"  error:    {t.error}")
        if t.result is not None:
            click.echo(f"  result:   {t.result}")
        click.echo("  prompt:")
        for line in t.prompt.splitlines():
            click.echo(f"    {line}")
        click.echo("  history:")
        for ev in history:
            click.echo(f"    {ev.version:>3}  {ev.occurred_at:%Y-%m-%d %H:%M:%S}  "
                       f"{ev.type:<15} {ev.actor}  pos {ev.position}")


def _print_report(report: ImportReport, total: int, as_json: bool, path: str) -> None:
    if as_json:
        emit_json({"file": path, "tasks": total, **report.to_json()})
        return
    verb = "would import" if report.dry_run else "imported"
    click.echo(f"{verb} {path}: {len(report.created)} created, {len(report.updated)} updated, "
               f"{len(report.completed)} marked completed, {len(report.unchanged)} unchanged "
               f"({total} task(s) in the file)")
    for label, ids in (("created", report.created), ("updated", report.updated),
                       ("completed", report.completed)):
        for task_id in ids:
            click.echo(f"  {label:<9} {task_id}")


@task.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--sequential", is_flag=True,
              help="Each task depends on the one before it (file order).")
@click.option("--agent", default=None,
              help="Agent for tasks that name none (default: the lead routes them).")
@click.option("--dry-run", is_flag=True, help="Validate and show what would change; write nothing.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@backlog_errors
@run_async
async def import_cmd(obj: Ctx, file: Path, sequential: bool, agent: str | None, dry_run: bool,
                     as_json: bool) -> None:
    """Import a YAML task file or a story (Markdown). Validates the whole file first;
    re-importing the same file adds nothing (see docs/backlog.md)."""
    from orchestrator.importers import load_tasks

    loaded = load_tasks(file, sequential=sequential, agent=agent)
    for warning in loaded.warnings:
        click.echo(f"orchestrail: warning: {warning}", err=True)
    known = _known_agents(loaded.specs)
    store, backlog = await _validated(obj, loaded.specs, known, dry_run)
    async with store:
        report = await backlog.add(loaded.specs, known_agents=known, done=loaded.done,
                                   done_result="checked in the story", dry_run=dry_run)
    for warning in report.warnings:
        click.echo(f"orchestrail: warning: {warning}", err=True)
    _print_report(report, len(loaded.specs), as_json, str(file))
    sys.stdout.flush()
