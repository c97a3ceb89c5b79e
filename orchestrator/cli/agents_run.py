"""``orchestrail agents run NAME PROMPT``: one subagent, one task, here and now.

Progress (turns, tool calls, permission decisions) goes to stderr as it happens; the final
status line (or, with ``--json``, a summary object) goes to stdout. Exit code: 0 when the
session completed, 1 when it failed or hit a budget, 2 for bad arguments.

The Bash tool's environment is minimal (no API keys): ``PATH`` is ours with the directory
of the running Python put first (so ``python -m pytest`` finds the interpreter
orchestrail runs in), plus any variable named with ``--pass-env``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from orchestrator.cli.common import Ctx, emit_json, fail, run_async


def _progress(kind: str, data: dict[str, Any]) -> None:
    """One short line per interesting event, on stderr."""
    from orchestrator.progress import event_line

    line = event_line(kind, data)
    if line is not None:
        click.echo(line, err=True)


@click.command("run")
@click.argument("name")
@click.argument("prompt")
@click.option("--provider", "provider_name", default="script", show_default=True,
              help="script, replay, anthropic, openai.")
@click.option("--script", "script_path", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML file of model turns (script provider).")
@click.option("--replay-session", help="Session id to replay (replay provider).")
@click.option("--workspace", type=click.Path(file_okay=False, path_type=Path),
              help="Directory the agent works in (default: current directory).")
@click.option("--model", help="Model override (alias or full id).")
@click.option("--max-turns", type=click.IntRange(min=1), help="Budget: model turns.")
@click.option("--max-tokens", "max_total_tokens", type=click.IntRange(min=1),
              help="Budget: total tokens.")
@click.option("--max-cost", type=float, help="Budget: USD.")
@click.option("--max-time", type=float, help="Budget: wall time in seconds.")
@click.option("--permission-mode", help="Override the definition's permissionMode.")
@click.option("--policy", type=click.Path(dir_okay=False, path_type=Path),
              help="Approval policy file for 'ask' decisions (else: TTY prompt, or deny).")
@click.option("--run-id", help="Correlation id (default: the session id).")
@click.option("--pass-env", multiple=True, metavar="NAME",
              help="Pass this environment variable to the Bash tool (repeatable).")
@click.option("--record-prompts", is_flag=True, help="Store full prompts in model.called.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.pass_obj
@run_async
async def run(obj: Ctx, name: str, prompt: str, provider_name: str, script_path: Path | None,
              replay_session: str | None, workspace: Path | None, model: str | None,
              max_turns: int | None, max_total_tokens: int | None, max_cost: float | None,
              max_time: float | None, permission_mode: str | None, policy: Path | None,
              run_id: str | None, pass_env: tuple[str, ...], record_prompts: bool,
              as_json: bool) -> None:
    """Run subagent NAME on PROMPT with every action recorded in the store."""
    from agents.approval import make_approver
    from agents.discovery import load_agents
    from agents.errors import AgentError
    from agents.loop import AgentSession, Budgets
    from agents.models import ModelCatalog
    from agents.permissions import PermissionEngine, load_settings
    from agents.providers import get_provider
    from agents.providers.base import ProviderError
    from agents.tools import minimal_env

    ws = (workspace or Path.cwd()).resolve()
    if not ws.is_dir():
        fail(f"--workspace {ws}: not a directory", 2)
    store = await obj.open_store()
    try:
        try:
            definition = load_agents(ws).get(name)
            catalog = ModelCatalog.from_config(obj.config())
            resolved = catalog.resolve(model or definition.model, provider_name)
            settings = load_settings(ws)
            engine = PermissionEngine.for_agent(
                definition, ws, rules=settings.rules, mode=permission_mode,
                additional_dirs=settings.additional_directories)
            approver = make_approver(policy=policy, workspace=ws)
            if provider_name == "script":
                if script_path is None:
                    fail("--provider script needs --script FILE", 2)
                provider = get_provider("script", script_path)
            elif provider_name == "replay":
                if not replay_session:
                    fail("--provider replay needs --replay-session ID", 2)
                provider = get_provider("replay", store, replay_session, workspace=str(ws))
            else:
                provider = get_provider(provider_name)
        except (AgentError, ProviderError) as exc:
            fail(str(exc))
            return
        env = minimal_env(str(ws))
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
        for var in pass_env:
            if var in os.environ:
                env[var] = os.environ[var]
        from orchestrator.workspace import git_info

        # where the session starts from, so `rerun` can recreate it in a scratch clone
        git = await git_info(ws)
        budgets = Budgets(max_turns=max_turns or definition.max_turns,
                          max_tokens=max_total_tokens, max_cost_usd=max_cost,
                          max_wall_seconds=max_time)
        session = AgentSession(
            definition, prompt, provider=provider, store=store, workspace=ws, model=resolved,
            provider_name=provider_name, run_id=run_id, budgets=budgets, engine=engine,
            approver=approver, cost_fn=catalog.cost, record_prompts=record_prompts, env=env,
            on_progress=_progress, started_extra={"git": git} if git else None)
        env["ORCHESTRAIL_SESSION_ID"] = session.session_id
        click.echo(f"session {session.session_id}: {name} on {provider_name}/{resolved} "
                   f"in {ws}", err=True)
        try:
            result = await session.run()
        finally:
            await provider.aclose()
    finally:
        await store.close()
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(f"{result.status}: {result.turns} turns, {result.tool_calls} tool calls, "
                   f"{result.denials} denied; session {result.session_id}")
        if result.error:
            click.echo(f"error: {result.error}")
        elif result.final_text:
            click.echo(result.final_text)
    sys.exit(0 if result.ok else 1)
