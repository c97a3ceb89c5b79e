"""TodoWrite: the model's own task list, kept on the session (and in the trail).

It has no side effect outside the session, so it needs no permission (Claude Code does the
same); the list itself is visible in the ``tool.requested`` event's input.
"""

from __future__ import annotations

from typing import Any, ClassVar

from agents.tools.base import Tool, ToolContext, ToolError, ToolResult


class TodoWrite(Tool):
    name: ClassVar[str] = "TodoWrite"
    description: ClassVar[str] = (
        "Replace the session's todo list. At most one item should be in_progress.")
    input_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "todos": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "content": {"type": "string", "minLength": 1},
                        "status": {"type": "string",
                                   "enum": ["pending", "in_progress", "completed"]},
                        "activeForm": {"type": "string"},
                        "id": {"type": "string"},
                        "priority": {"type": "string", "enum": ["high", "medium", "low"]},
                    },
                    "required": ["content", "status"],
                    "additionalProperties": False,
                },
            },
        },
        "required": ["todos"],
        "additionalProperties": False,
    }

    async def run(self, data: dict[str, Any], ctx: ToolContext) -> ToolResult:
        todos: list[dict[str, Any]] = data["todos"]
        active = sum(1 for t in todos if t["status"] == "in_progress")
        if active > 1:
            raise ToolError(f"{active} todos are in_progress; at most one may be")
        ctx.todos[:] = [dict(t) for t in todos]
        done = sum(1 for t in todos if t["status"] == "completed")
        return ToolResult(f"Todos updated: {len(todos)} items, {done} completed, "
                          f"{active} in progress.")
