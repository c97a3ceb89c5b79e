"""The ``orchestrail`` command line.

Sub-commands live in their own modules and are imported only when invoked
(``LazyGroup``), so ``orchestrail --help`` and the Claude Code hook path never pay for
pydantic, SQLAlchemy or a model SDK.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

#: name -> "module:attribute" of a click command, loaded on first use.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("orchestrator.cli.init:init", "Create orchestrail.yaml and ignore .orchestrail/."),
    "events": ("orchestrator.cli.events:events", "Append, query, tail and verify events."),
    "verify": ("orchestrator.cli.events:verify", "Check every hash chain in the store."),
    "store": ("orchestrator.cli.store:store", "Store info, retention, copy, migrate."),
    "agents": ("orchestrator.cli.agents:agents", "List, show and validate subagent definitions."),
    "task": ("orchestrator.cli.tasks:task", "The backlog: add, list, show, ready, import tasks."),
    "runs": ("orchestrator.cli.runs:runs", "List runs, newest first."),
    "replay": ("orchestrator.cli.replay:replay", "Rebuild a run from its events (no execution)."),
    "hook": ("orchestrator.cli.hook:hook", "Record a Claude Code hook event (stdin JSON)."),
    "run": ("orchestrator.cli.run:run", "Dispatch the backlog's ready tasks to their agents."),
    "resume": ("orchestrator.cli.resume:resume", "Finish a run that crashed or was stopped."),
    "worker": ("orchestrator.cli.worker:worker", "Claim and work tasks from a shared store."),
    "rerun": ("orchestrator.cli.rerun:rerun", "Execute a run again from its recorded turns."),
    "diff": ("orchestrator.cli.diff:diff", "Where two runs of the same work differ."),
    "audit": ("orchestrator.cli.audit:audit", "A review report: Markdown, JSON or HTML."),
    "import": ("orchestrator.cli.import_:import_", "Import Claude Code transcripts."),
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target[0].split(":")
        cmd = getattr(importlib.import_module(module), attr)
        assert isinstance(cmd, click.Command)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in sorted(COMMANDS)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--store", "store_url", metavar="URL", envvar="ORCHESTRAIL_STORE",
              help="Store URL (overrides orchestrail.yaml; env ORCHESTRAIL_STORE).")
@click.option("--config", "config_path", metavar="PATH", envvar="ORCHESTRAIL_CONFIG",
              type=click.Path(dir_okay=False), help="Config file (env ORCHESTRAIL_CONFIG).")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.version_option(package_name="orchestrail")
@click.pass_context
def cli(ctx: click.Context, store_url: str | None, config_path: str | None, verbose: int) -> None:
    """orchestrail: orchestrate AI agents with an event-sourced, verifiable audit trail.

    The default store is the SQLite file .orchestrail/events.db, or what orchestrail.yaml
    (searched from the current directory upwards) says under store.url.
    """
    from orchestrator.cli.common import Ctx, configure_logging

    configure_logging(verbose)
    ctx.obj = Ctx(store_url=store_url, config_path=config_path)


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    return cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="orchestrail")
