"""Confine a tool's path argument to the workspace root.

The resolution rules live in ``agents.paths`` (shared with the permission engine, so a path
is judged the same way when it is checked and when it is used): symlinks followed, ``..``
applied after resolution, a not-yet-existing tail appended to its deepest existing parent.
A path whose real location is outside the workspace is refused here, before any I/O,
whatever the permission rules said: the rules decide *whether* a tool may run, confinement
decides *where* it may touch. (Between this check and the write a concurrent process could
swap a directory for a symlink; a session's workspace is its own, so we accept that race.)
"""

from __future__ import annotations

from pathlib import Path

from agents.paths import is_within, resolve
from agents.tools.base import ToolError


def confine(path: str, root: Path) -> Path:
    """The real absolute path of ``path`` (relative to ``root``), or ToolError if outside."""
    if not isinstance(path, str) or not path.strip():
        raise ToolError("a path is required")
    try:
        real = resolve(path, root, root)
    except (ValueError, OSError) as exc:
        raise ToolError(f"invalid path {path!r}: {exc}") from None
    if not is_within(real, root):
        raise ToolError(f"path {path!r} is outside the workspace {root} (resolves to {real}); "
                        "file tools are confined to the workspace")
    return real


def relative(path: Path, root: Path) -> str:
    """``path`` relative to the workspace, for results and events."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        return str(path)
    return str(rel) or "."
