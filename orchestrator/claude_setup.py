"""``orchestrail init --claude``: register ``orchestrail hook`` in a project's Claude Code
settings and copy the example subagents, never clobbering what is there.

Merging rules: every other key of the settings file is kept as it is; for each hook event
our handler is added as one more matcher group (no matcher = every tool / source), unless
a handler running ``orchestrail hook`` is already registered for that event, in which
case the event is left alone (running ``init --claude`` twice changes nothing). The old
file is kept as ``<name>.bak`` and the new one replaces it atomically. A settings file
that is not a JSON object is refused with its path, and nothing is written.

The command is the absolute path of the running ``orchestrail`` by default: Claude Code
runs hooks through a shell whose PATH may not include the virtualenv, and a hook that is
"command not found" fails on every tool call. ``--hook-command 'orchestrail hook'`` keeps
a portable command for a settings.json shared through git.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from eventstore.errors import ConfigError

#: Every hook event Claude Code documents (reference/claude-code-formats.md §3.2).
#: A future event not listed here is still recorded if a user registers it by hand.
HOOK_EVENTS = (
    "SessionStart", "Setup", "UserPromptSubmit", "UserPromptExpansion", "PreToolUse",
    "PermissionRequest", "PermissionDenied", "PostToolUse", "PostToolUseFailure",
    "PostToolBatch", "Notification", "MessageDisplay", "SubagentStart", "SubagentStop",
    "TaskCreated", "TaskCompleted", "Stop", "StopFailure", "TeammateIdle",
    "InstructionsLoaded", "ConfigChange", "CwdChanged", "DirectoryAdded", "FileChanged",
    "WorktreeCreate", "WorktreeRemove", "PreCompact", "PostCompact", "Elicitation",
    "ElicitationResult", "SessionEnd",
)
#: Events whose command hook *replaces* Claude Code's own behaviour (a WorktreeCreate hook
#: must create the worktree and print its path): a recorder there would break the feature.
SKIP_EVENTS = frozenset({"WorktreeCreate", "WorktreeRemove"})
HOOK_TIMEOUT_S = 10
EXAMPLE_AGENTS = Path(__file__).resolve().parents[1] / ".claude" / "agents"


def default_command() -> str:
    """``<absolute path of orchestrail> hook``."""
    exe = shutil.which("orchestrail")
    script = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    if script is not None and script.name == "orchestrail" and script.exists():
        exe = str(script)
    if exe is None:
        return "orchestrail hook"
    return f"{shlex.quote(str(Path(exe).absolute()))} hook"


def _is_ours(handler: Any) -> bool:
    if not isinstance(handler, dict):
        return False
    cmd = handler.get("command")
    return isinstance(cmd, str) and "orchestrail" in cmd and cmd.rstrip().endswith(" hook")


def merge_hooks(settings: dict[str, Any], command: str) -> list[str]:
    """Add our handler to every event that lacks one; return the events changed."""
    hooks = settings.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise ConfigError("settings 'hooks' must be an object")
    added: list[str] = []
    for event in HOOK_EVENTS:
        if event in SKIP_EVENTS:
            continue
        groups = hooks.setdefault(event, [])
        if not isinstance(groups, list):
            raise ConfigError(f"settings 'hooks.{event}' must be a list")
        if any(_is_ours(h) for g in groups if isinstance(g, dict)
               for h in (g.get("hooks") or [])):
            continue
        groups.append({"hooks": [{"type": "command", "command": command,
                                  "timeout": HOOK_TIMEOUT_S}]})
        added.append(event)
    return added


def write_settings(path: Path, command: str) -> list[str]:
    """Merge our hooks into ``path`` (created if missing); keep ``path.bak``; atomic."""
    settings: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8") or "{}")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(f"{path}: not readable JSON ({exc}); fix it or move it away, "
                              "nothing was written") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: must hold a JSON object; nothing was written")
        settings = loaded
    try:
        added = merge_hooks(settings, command)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}; nothing was written") from None
    if not added:
        return []
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        shutil.copy2(path, path.with_name(path.name + ".bak"))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(settings, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return added


def copy_agents(dest: Path, source: Path = EXAMPLE_AGENTS) -> tuple[list[str], list[str]]:
    """Copy the example subagents; an existing file of the same name is never touched."""
    copied: list[str] = []
    kept: list[str] = []
    if not source.is_dir():
        return copied, kept
    dest.mkdir(parents=True, exist_ok=True)
    for src in sorted(source.glob("*.md")):
        target = dest / src.name
        if target.exists():
            kept.append(src.name)
            continue
        shutil.copy2(src, target)
        copied.append(src.name)
    return copied, kept
