"""``orchestrail agents``: list, show, validate and check subagent definitions.

Definitions are discovered under the project root (``--root``, default the current
directory) and ``~/.claude/agents``; see docs/agents.md for the order.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli.common import emit_json, fail

if TYPE_CHECKING:
    from agents.definition import AgentDefinition
    from agents.discovery import AgentRegistry

root_option = click.option(
    "--root", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Project root to discover agents in (default: current directory).")


def _registry(root: Path | None) -> AgentRegistry:
    from agents.discovery import load_agents

    return load_agents((root or Path.cwd()).resolve())


def _rel(path: Path | None) -> str:
    if path is None:
        return "-"
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _tools_text(d: AgentDefinition) -> str:
    if d.tools is None:
        return "(all)"
    return ", ".join(d.tools) if d.tools else "(none)"


@click.group()
def agents() -> None:
    """List, show and validate subagent definitions (Claude Code format)."""


@agents.command("list")
@root_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per agent.")
def list_(root: Path | None, as_json: bool) -> None:
    """Every agent in effect: name, model, tools, source file, and what it shadows."""
    reg = _registry(root)
    for d in reg:
        shadows = [_rel(s.source) for s in reg.shadowed_by(d.name)]
        if as_json:
            emit_json({"name": d.name, "model": d.model, "tools": d.tools,
                       "disallowed_tools": list(d.disallowed_tools),
                       "permission_mode": d.permission_mode, "scope": d.scope,
                       "source": str(d.source), "shadows": shadows,
                       "definition_hash": d.definition_hash})
            continue
        click.echo(f"{d.name}  model={d.model}  scope={d.scope}  source={_rel(d.source)}")
        click.echo(f"    tools: {_tools_text(d)}")
        if shadows:
            click.echo(f"    shadows: {', '.join(shadows)}")
    if not len(reg) and not as_json:
        where = ", ".join(_rel(p) for _, p in reg.directories)
        click.echo(f"no subagents found (searched {where})", err=True)
    broken = [s for s in reg.skipped if not s.documentation]
    if broken:
        click.echo(f"note: {len(broken)} file(s) skipped with errors; run "
                   "'orchestrail agents validate'", err=True)


@agents.command()
@click.argument("name")
@root_option
@click.option("--json", "as_json", is_flag=True, help="All fields as one JSON object.")
def show(name: str, root: Path | None, as_json: bool) -> None:
    """All fields of one agent, then its prompt."""
    from agents.errors import AgentNotFound

    reg = _registry(root)
    try:
        d = reg.get(name)
    except AgentNotFound as exc:
        fail(str(exc))
        return
    shadows = [str(s.source) for s in reg.shadowed_by(name)]
    if as_json:
        data: dict[str, Any] = d.model_dump(mode="json", exclude={"key_lines"})
        data["shadows"] = shadows
        emit_json(data)
        return
    from agents.rules import NATIVE_TOOLS, canonical_tool, parse_rule

    rows: list[tuple[str, Any]] = [
        ("name", d.name), ("source", d.source), ("scope", d.scope),
        ("definition_hash", d.definition_hash), ("model", d.model),
        ("tools", _tools_text(d)), ("disallowedTools", ", ".join(d.disallowed_tools) or None),
        ("permissionMode", d.permission_mode or "(inherit)"), ("maxTurns", d.max_turns),
        ("skills", ", ".join(d.skills) if d.skills is not None else None),
        ("mcpServers", json.dumps(list(d.mcp_servers)) if d.mcp_servers else None),
        ("hooks", json.dumps(d.hooks) if d.hooks else None), ("memory", d.memory),
        ("background", d.background), ("effort", d.effort), ("isolation", d.isolation),
        ("color", d.color), ("initialPrompt", d.initial_prompt),
    ]
    rows += [(f"extra.{k}", json.dumps(v, default=str)) for k, v in d.extra.items()]
    if shadows:
        rows.append(("shadows", ", ".join(shadows)))
    if d.tools:
        foreign = sorted({canonical_tool(parse_rule(t).tool) for t in d.tools
                          if _parses(t)} - NATIVE_TOOLS)
        if foreign:
            rows.append(("not native", ", ".join(foreign) + " (claude-code provider only)"))
    for key, value in rows:
        if value is not None:
            click.echo(f"{key + ':':17} {value}")
    click.echo("description:")
    for line in d.description.splitlines():
        click.echo(f"  {line}")
    for p in d.problems:
        click.echo(str(p), err=True)
    click.echo("--- prompt ---")
    click.echo(d.prompt)


def _parses(text: str) -> bool:
    from agents.rules import parse_rule

    try:
        parse_rule(text)
    except ValueError:
        return False
    return True


@agents.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@root_option
@click.option("--strict", is_flag=True, help="Warnings fail too.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per problem.")
def validate(paths: tuple[Path, ...], root: Path | None, strict: bool, as_json: bool) -> None:
    """Check agent files (default: every *.md discovery sees). Prints file:line: message
    for each problem; exit 1 on any error (or warning with --strict)."""
    from agents.discovery import validate_paths

    if paths:
        loaded, problems = validate_paths(list(paths))
        count = len(loaded)
    else:
        reg = _registry(root)
        problems = reg.problems()
        count = len(reg) + len(reg.shadowed)
    for p in problems:
        if as_json:
            emit_json({"path": str(p.path) if p.path else None, "line": p.line,
                       "severity": p.severity, "message": p.message})
        else:
            click.echo(str(p))
    errors = [p for p in problems if p.severity == "error" or strict]
    if not as_json:
        click.echo(f"{count} definition(s) loaded, {len(errors)} error(s), "
                   f"{len(problems) - len([p for p in problems if p.severity == 'error'])} "
                   "warning(s)", err=True)
    if errors:
        sys.exit(1)


@agents.command()
@click.argument("name")
@click.argument("tool")
@click.argument("arg", required=False)
@root_option
@click.option("--input", "input_json", metavar="JSON", help="The full tool input as JSON.")
@click.option("--mode", help="Override the agent's permissionMode.")
@click.option("--json", "as_json", is_flag=True, help="The decision as JSON.")
def check(name: str, tool: str, arg: str | None, root: Path | None, input_json: str | None,
          mode: str | None, as_json: bool) -> None:
    """Would agent NAME be allowed TOOL? ARG is the command (Bash), path (file tools), URL
    (WebFetch) or subagent (Agent). Exit 0 allow, 1 deny, 2 ask."""
    from agents.errors import AgentError
    from agents.permissions import PermissionEngine, load_settings

    root = (root or Path.cwd()).resolve()
    try:
        d = _registry(root).get(name)
        settings = load_settings(root)
        engine = PermissionEngine.for_agent(d, root, rules=settings.rules,
                                            mode=mode or None,
                                            additional_dirs=settings.additional_directories)
    except AgentError as exc:
        fail(str(exc))
        return
    if input_json:
        try:
            tool_input = json.loads(input_json)
        except json.JSONDecodeError as exc:
            fail(f"--input is not JSON: {exc.msg}")
            return
    else:
        key = {"Bash": "command", "WebFetch": "url", "Agent": "subagent_type",
               "Task": "subagent_type", "Glob": "path", "Grep": "path"}.get(tool, "file_path")
        tool_input = {key: arg} if arg is not None else {}
    decision = engine.check(tool, tool_input)
    if as_json:
        emit_json(decision.to_dict())
    else:
        click.echo(f"{decision.behavior}: {decision.reason}")
        if decision.rule:
            click.echo(f"  rule: {decision.rule}")
        for part in decision.parts:
            click.echo(f"  - {part.behavior}: {part.subject}: {part.reason}")
    sys.exit({"allow": 0, "deny": 1, "ask": 2}[decision.behavior])


from orchestrator.cli.agents_run import run as _run  # noqa: E402 - the runtime engineer's command

agents.add_command(_run)
