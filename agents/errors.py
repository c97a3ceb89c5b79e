"""Errors of the agents package. Each message names the file and line it is about.

They do not derive from ``eventstore.errors.StoreError`` on purpose: a bad agent file is
the user's input problem, not a store failure, and the CLI reports both the same way
(one line, exit 1) without conflating them.
"""

from __future__ import annotations

from pathlib import Path


class AgentError(Exception):
    """Base class of every error the agents package raises on purpose."""


class DefinitionError(AgentError, ValueError):
    """A file is not a valid subagent definition. ``str()`` is ``file:line: message``."""

    def __init__(self, message: str, path: Path | str | None = None, line: int | None = None):
        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line
        super().__init__(self.location() + message)

    def location(self) -> str:
        if self.path is None:
            return f"line {self.line}: " if self.line else ""
        return f"{self.path}:{self.line}: " if self.line else f"{self.path}: "


class AgentNotFound(AgentError, KeyError):
    """No discovered definition has this name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class PermissionConfigError(AgentError, ValueError):
    """A permission rule, mode or policy file is invalid, or a mode is refused here."""
