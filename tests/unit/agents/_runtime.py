"""Shared helpers for the runtime tests (tools, loop, providers, hostile calls)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from agents.definition import AgentDefinition, parse_definition
from agents.loop import AgentSession, SessionResult
from agents.providers.script import ScriptProvider
from eventstore.backends.memory import MemoryStore
from eventstore.base import EventStore
from eventstore.model import RecordedEvent

#: A realistic restricted agent: file tools, and Bash only for a few command prefixes.
TOOLS = ("Read, Write, Edit, MultiEdit, Glob, Grep, TodoWrite, Bash(echo:*), Bash(ls:*), "
         "Bash(seq:*), Bash(sleep:*), Bash(yes:*), Bash(python -m pytest:*)")


def definition(tools: str | None = TOOLS, mode: str | None = "acceptEdits",
               name: str = "tester", extra: str = "") -> AgentDefinition:
    lines = ["---", f"name: {name}", "description: runtime test agent"]
    if tools is not None:
        lines.append(f"tools: {tools}")
    if mode:
        lines.append(f"permissionMode: {mode}")
    if extra:
        lines.append(extra)
    lines += ["---", "You are a test agent."]
    return parse_definition("\n".join(lines) + "\n")


async def run_script(turns: list[Any], workspace: Path, *, store: EventStore | None = None,
                     defn: AgentDefinition | None = None, **kwargs: Any
                     ) -> tuple[SessionResult, list[RecordedEvent]]:
    store = store or MemoryStore()
    provider = ScriptProvider(turns=turns)
    result = await AgentSession(defn or definition(), kwargs.pop("prompt", "do the task"),
                                provider=provider, store=store, workspace=workspace,
                                **kwargs).run()
    events = [ev async for ev in store.read_stream(f"session-{result.session_id}")]
    return result, events


def of_type(events: list[RecordedEvent], type_: str) -> list[RecordedEvent]:
    return [e for e in events if e.type == type_]


def one_call(tool: str, data: Any) -> list[Any]:
    """A script: one tool call, then a final answer."""
    return [{"tool_calls": [{"name": tool, "input": data}]}, {"text": "done"}]


def running(marker: str) -> bool:
    """Whether a live (not zombie) process has ``marker`` in its command line."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if marker.encode() in cmd and ") Z " not in stat:
            return True
    return False


async def killed(marker: str, within: float = 30.0) -> bool:
    """Whether every process with ``marker`` is gone within ``within`` seconds.

    Bash returns once it has SIGKILLed the command's process group; a signalled process
    dies when the kernel next schedules it, which on a loaded machine can take longer than
    any fixed sleep. A ``sleep 1000`` that escaped is still there after 30 s."""
    deadline = time.monotonic() + within
    while running(marker):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True
