"""``orchestrail [--store URL] hook``, reached through click (listed in ``--help``).

The console script normally runs ``orchestrator.hook`` directly, without click (see
``orchestrator.entry``); this command exists for ``--help`` and for global options given
before ``hook`` (``--store``, ``--config``), which it passes on through the environment.
"""

from __future__ import annotations

import os

import click


@click.command("hook", context_settings={"ignore_unknown_options": True})
@click.option("--flush", is_flag=True, help="Deliver spooled hook input to the store.")
@click.pass_context
def hook(ctx: click.Context, flush: bool) -> None:
    """Record one Claude Code hook event (JSON on stdin); always exits 0, prints nothing."""
    from orchestrator.hook import main

    obj = ctx.obj
    if getattr(obj, "store_url", None):
        os.environ["ORCHESTRAIL_STORE"] = obj.store_url
    if getattr(obj, "config_path", None):
        os.environ["ORCHESTRAIL_CONFIG"] = obj.config_path
    ctx.exit(main(["--flush"] if flush else []))
