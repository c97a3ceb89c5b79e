"""The ``orchestrail`` console script: ``hook`` first, everything else through click.

``orchestrail hook`` runs on every Claude Code tool call, and importing click alone costs
more than starting the interpreter; so the hook is dispatched here, before
``orchestrator.cli`` (and click) is imported. Every other command goes to the click group.
"""

from __future__ import annotations

import sys
from typing import Any


def main(argv: list[str] | None = None) -> Any:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["hook"]:
        from orchestrator.hook import main as hook_main

        return hook_main(args[1:])
    from orchestrator.cli import main as cli_main

    return cli_main(args)
