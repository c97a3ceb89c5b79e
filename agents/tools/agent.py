"""Agent (formerly Task): delegate a sub-task to another subagent.

The runtime does not know how to start another session: the caller does (the orchestrator
puts it on its backlog; ``orchestrail agents run`` runs it inline). So the tool calls
``ctx.delegate`` and returns the child's final text. Depth is limited (``ctx.max_depth``,
default 2) so a subagent that delegates to itself cannot recurse without end. Which
subagents may be spawned is a permission question (``Agent(name)`` rules), checked by the
loop before this runs.
"""

from __future__ import annotations

from typing import Any, ClassVar

from agents.tools.base import DelegateRequest, Tool, ToolContext, ToolError, ToolResult


class Agent(Tool):
    name: ClassVar[str] = "Agent"
    description: ClassVar[str] = (
        "Delegate a task to another subagent (subagent_type) with a self-contained prompt; "
        "returns the subagent's final answer.")
    input_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "subagent_type": {"type": "string", "minLength": 1,
                              "description": "Name of the subagent to run"},
            "prompt": {"type": "string", "minLength": 1, "description": "The task"},
            "description": {"type": "string", "description": "A short (3-5 word) summary"},
            "model": {"type": "string", "description": "Optional model override"},
        },
        "required": ["subagent_type", "prompt", "description"],
        "additionalProperties": False,
    }

    async def run(self, data: dict[str, Any], ctx: ToolContext) -> ToolResult:
        if ctx.delegate is None:
            raise ToolError("delegation is not available in this session (no delegate)")
        if ctx.depth + 1 > ctx.max_depth:
            raise ToolError(f"delegation depth limit reached ({ctx.max_depth}): this "
                            "subagent may not start another one")
        request = DelegateRequest(
            subagent_type=data["subagent_type"], prompt=data["prompt"],
            description=data.get("description", ""), model=data.get("model"),
            depth=ctx.depth + 1, parent_session=ctx.session_id,
            tool_use_id=ctx.tool_use_id, requested_event_id=ctx.requested_event_id,
            resumed=ctx.resuming)
        text = await ctx.delegate(request)
        return ToolResult(text)
