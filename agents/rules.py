"""Tool names and the ``Tool`` / ``Tool(specifier)`` rule syntax shared by definitions and
permissions.

Kept free of pydantic and YAML so the permission engine and the hook path stay cheap to
import.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Every built-in tool name Claude Code has shipped (current and renamed ones). A name in
#: an agent's ``tools`` outside this set (and not ``mcp__...``) is reported by ``validate``.
CLAUDE_CODE_TOOLS: frozenset[str] = frozenset({
    "Agent", "Task", "Bash", "BashOutput", "KillShell", "KillBash", "Read", "Write", "Edit",
    "MultiEdit", "Glob", "Grep", "LS", "NotebookEdit", "NotebookRead", "WebFetch", "WebSearch",
    "TodoWrite", "TodoRead", "Skill", "SlashCommand", "ExitPlanMode", "EnterPlanMode",
    "AskUserQuestion", "PowerShell", "ToolSearch", "EnterWorktree", "ExitWorktree", "Monitor",
    "TaskStop", "TaskOutput", "TaskCreate", "TaskGet", "TaskList", "TaskUpdate", "SendMessage",
    "Artifact", "LSP", "ListMcpResourcesTool", "ReadMcpResourceTool", "TeamCreate", "TeamDelete",
    "CronCreate", "CronDelete", "CronList",
})

#: What orchestrail's own runtime implements (issue 4 item 3). Other Claude Code tools load
#: fine and work under the ``claude-code`` provider.
NATIVE_TOOLS: frozenset[str] = frozenset({
    "Read", "Write", "Edit", "MultiEdit", "Glob", "Grep", "Bash", "TodoWrite", "Agent",
})

#: File-reading tools: ``Read(path)`` rules apply to all of them.
READ_TOOLS: frozenset[str] = frozenset({"Read", "Glob", "Grep", "LS", "NotebookRead"})
#: File-editing tools: ``Edit(path)`` rules apply to all of them (as in Claude Code).
EDIT_TOOLS: frozenset[str] = frozenset({"Edit", "Write", "MultiEdit", "NotebookEdit"})
#: Tools that never need permission (bookkeeping, no side effects outside the session).
NO_PERMISSION_TOOLS: frozenset[str] = frozenset({
    "TodoWrite", "TodoRead", "ToolSearch", "AskUserQuestion", "ExitPlanMode", "EnterPlanMode",
    "TaskCreate", "TaskGet", "TaskList", "TaskUpdate", "TaskOutput", "BashOutput",
})

#: Legacy names: ``Task`` was renamed ``Agent`` in Claude Code v2.1.63.
ALIASES: dict[str, str] = {"Task": "Agent", "KillBash": "KillShell"}

_NAME = re.compile(r"^[A-Za-z_*][A-Za-z0-9_*.-]*$")


def canonical_tool(name: str) -> str:
    """``Task`` -> ``Agent``; every other name unchanged."""
    return ALIASES.get(name, name)


def is_known_tool(name: str) -> bool:
    return name in CLAUDE_CODE_TOOLS or name.startswith("mcp__") or name == "*"


@dataclass(frozen=True)
class Rule:
    """``Tool`` or ``Tool(specifier)``; ``Bash(*)`` and ``Bash()`` mean the bare tool."""

    tool: str
    specifier: str | None
    text: str

    @property
    def canonical_tool(self) -> str:
        return canonical_tool(self.tool)

    def __str__(self) -> str:
        return self.text


def parse_rule(text: str) -> Rule:
    """Parse one rule. Raises ValueError with a reason on malformed input."""
    raw = text.strip()
    if not raw:
        raise ValueError("empty rule")
    paren = raw.find("(")
    if paren == -1:
        if not _NAME.match(raw):
            raise ValueError(f"{raw!r} is not a tool name")
        return Rule(raw, None, raw)
    if not raw.endswith(")"):
        raise ValueError(f"{raw!r}: a rule's specifier must end with ')'")
    name, spec = raw[:paren].strip(), raw[paren + 1:-1]
    if not _NAME.match(name):
        raise ValueError(f"{raw!r}: {name!r} is not a tool name")
    spec = spec.replace("\\(", "(").replace("\\)", ")").strip()
    if spec in ("", "*"):
        return Rule(name, None, raw)
    return Rule(name, spec, raw)


def split_tool_list(value: str) -> tuple[list[str], list[str]]:
    """Split ``"Read, Grep, Bash(git diff *)"`` on commas and whitespace outside parentheses.

    Returns (entries, problems). An unbalanced parenthesis keeps the rest as one entry and
    reports it, rather than guessing where the rule ends.
    """
    entries: list[str] = []
    problems: list[str] = []
    buf: list[str] = []
    depth = 0
    for ch in value:
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                problems.append(f"unbalanced ')' in {value!r}")
            depth = max(0, depth - 1)
        if depth == 0 and (ch == "," or ch.isspace()):
            if buf:
                entries.append("".join(buf))
                buf = []
            continue
        buf.append(ch)
    if buf:
        entries.append("".join(buf))
    if depth:
        problems.append(f"unclosed '(' in {value!r}")
    return entries, problems
