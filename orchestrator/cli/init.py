"""``orchestrail init``: a commented orchestrail.yaml and a .gitignore entry, never clobbering."""

from __future__ import annotations

from pathlib import Path

import click

TEMPLATE = """\
# orchestrail configuration (docs/config.md). Found from the working directory upwards.
store:
  # sqlite:///.orchestrail/events.db (default) | file:///.orchestrail/trail
  # postgresql://user@host:5432/db | esdb://host:2113?Tls=false
  url: {url}
  # retention: {{max_age: 90d, max_streams: 10000, keep: [run-]}}   # default: infinite
redact:
  enabled: true
  patterns: []          # extra regular expressions to redact before events are stored
"""


@click.command("init")
@click.option("--store-url", default="sqlite:///.orchestrail/events.db", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing orchestrail.yaml.")
@click.option("--claude", is_flag=True,
              help="Also register `orchestrail hook` for every Claude Code hook event in "
                   ".claude/settings.json (merged, never clobbered) and copy example agents.")
@click.option("--local", is_flag=True,
              help="With --claude: write .claude/settings.local.json (not shared) instead.")
@click.option("--hook-command", metavar="CMD", default=None,
              help="With --claude: the hook command (default: absolute path of this "
                   "orchestrail + ' hook').")
def init(store_url: str, force: bool, claude: bool, local: bool,
         hook_command: str | None) -> None:
    """Create orchestrail.yaml here and keep .orchestrail/ out of git."""
    cfg = Path("orchestrail.yaml")
    if cfg.exists() and not force:
        click.echo(f"{cfg} exists; leaving it alone (use --force to overwrite)")
    else:
        tmp = cfg.with_suffix(".yaml.tmp")
        tmp.write_text(TEMPLATE.format(url=store_url))
        tmp.replace(cfg)
        click.echo(f"wrote {cfg}")
    ignore = Path(".gitignore")
    lines = ignore.read_text().splitlines() if ignore.exists() else []
    if ".orchestrail/" not in lines and ".orchestrail" not in lines:
        with ignore.open("a") as fh:
            if lines and lines[-1] != "":
                fh.write("\n")
            fh.write(".orchestrail/\n")
        click.echo("added .orchestrail/ to .gitignore")
    if claude:
        _init_claude(local, hook_command)


def _init_claude(local: bool, hook_command: str | None) -> None:
    from orchestrator.claude_setup import copy_agents, default_command, write_settings

    settings = Path(".claude") / ("settings.local.json" if local else "settings.json")
    command = hook_command or default_command()
    try:
        added = write_settings(settings, command)
    except Exception as exc:  # ConfigError or OSError: one clear line, nothing written
        raise click.ClickException(str(exc)) from None
    if added:
        click.echo(f"registered `{command}` for {len(added)} hook event(s) in {settings}")
    else:
        click.echo(f"{settings} already runs orchestrail hook for every event; unchanged")
    copied, kept = copy_agents(Path(".claude") / "agents")
    for name in copied:
        click.echo(f"copied example agent .claude/agents/{name}")
    for name in kept:
        click.echo(f".claude/agents/{name} exists; left alone")
