"""The native runtime's tools (issue 4 item 3), by Claude Code name.

``TOOLS`` maps a tool name to its class; ``Task`` is accepted as the old name of ``Agent``.
Modules are small and stdlib-only, so importing this package is cheap.
"""

from __future__ import annotations

from agents.tools.agent import Agent
from agents.tools.base import (
    Delegate,
    DelegateRequest,
    FileTouched,
    Tool,
    ToolContext,
    ToolError,
    ToolResult,
)
from agents.tools.bash import Bash, minimal_env
from agents.tools.files import Edit, MultiEdit, Read, Write
from agents.tools.search import Glob, Grep
from agents.tools.todo import TodoWrite

TOOLS: dict[str, type[Tool]] = {
    cls.name: cls for cls in (Read, Write, Edit, MultiEdit, Glob, Grep, Bash, TodoWrite, Agent)
}
ALIASES = {"Task": "Agent"}


def get_tool(name: str) -> Tool | None:
    """A fresh instance of the native tool called ``name`` (or its old alias), else None."""
    cls = TOOLS.get(ALIASES.get(name, name))
    return cls() if cls is not None else None


__all__ = [
    "ALIASES", "TOOLS", "Agent", "Bash", "Delegate", "DelegateRequest", "Edit", "FileTouched",
    "Glob", "Grep", "MultiEdit", "Read", "TodoWrite", "Tool", "ToolContext", "ToolError",
    "ToolResult", "Write", "get_tool", "minimal_env",
]
