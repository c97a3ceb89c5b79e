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
def init(store_url: str, force: bool) -> None:
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
