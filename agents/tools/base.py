"""What every native tool shares: its schema, its context, its result, its errors.

A tool is a class with a ``name``, a ``description`` and an ``input_schema`` (the JSON
schema the model is shown, and the one its input is validated against before anything
runs) and an async ``run(input, ctx)``. Tools never raise for a problem the model caused:
they raise ``ToolError`` and the loop turns it into a ``tool_result`` with
``is_error: true``, so the model can correct itself and the trail records it.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from agents.tools.schema import check_schema, validate

#: Output longer than this (characters) is cut, with a note saying how much was dropped.
OUTPUT_CAP = 30_000


class ToolError(Exception):
    """A clean failure reported back to the model (bad path, no match, timeout...)."""


@dataclass(frozen=True)
class DelegateRequest:
    """An ``Agent`` tool call, handed to the caller's delegate callback."""

    subagent_type: str
    prompt: str
    description: str
    model: str | None
    depth: int  # depth of the child session (the parent's depth + 1)
    parent_session: str
    #: the call in the parent's trail: its ``tool_use_id`` and the id of its
    #: ``tool.requested`` event (what an orchestrator's dispatch is caused by)
    tool_use_id: str = ""
    requested_event_id: str = ""
    #: the call was running when the process that ran it died and a resumed session is
    #: continuing it: the delegate must continue what it started (the child's task and
    #: session) instead of starting anew, so nothing is done twice (``orchestrator.lead``)
    resumed: bool = False


#: ``await delegate(request)`` returns the child's final text (raise ToolError to fail).
Delegate = Callable[[DelegateRequest], Awaitable[str]]


@dataclass
class ToolContext:
    """Where and how tools run for one session."""

    workspace: Path
    session_id: str = ""
    env: dict[str, str] | None = None  # None: ``bash.minimal_env()``
    output_cap: int = OUTPUT_CAP
    bash_default_timeout: float = 120.0
    bash_max_timeout: float = 600.0
    depth: int = 0
    max_depth: int = 2
    delegate: Delegate | None = None
    #: the tool call being run now (set by the loop): its id and its ``tool.requested``
    #: event id ("" when unknown)
    tool_use_id: str = ""
    requested_event_id: str = ""
    #: set by a resumed session while it continues an ``Agent`` call the crash left
    #: running (``AgentSession.continues_delegations``): passed on as
    #: ``DelegateRequest.resumed``
    resuming: bool = False
    todos: list[dict[str, Any]] = field(default_factory=list)
    #: seconds left of the session's wall-time budget (Bash clamps its timeout to it)
    deadline_left: Callable[[], float | None] = lambda: None

    def __post_init__(self) -> None:
        self.workspace = Path(os.path.realpath(self.workspace))


@dataclass
class FileTouched:
    path: str  # relative to the workspace
    sha256: str
    bytes: int
    action: str  # created | modified

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "bytes": self.bytes,
                "action": self.action}


@dataclass
class ToolResult:
    output: str
    is_error: bool = False
    exit_code: int | None = None
    files: list[FileTouched] = field(default_factory=list)
    truncated: bool = False
    timed_out: bool = False


def cap_output(text: str, cap: int) -> tuple[str, bool]:
    """Cut ``text`` to ``cap`` characters with a note naming how many were dropped."""
    if len(text) <= cap:
        return text, False
    dropped = len(text) - cap
    return text[:cap] + f"\n[output truncated: {dropped} more characters not shown]", True


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Tool(ABC):
    name: ClassVar[str]
    description: ClassVar[str]
    input_schema: ClassVar[dict[str, Any]]

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if "input_schema" in cls.__dict__:
            check_schema(cls.input_schema, cls.__name__)

    def validate(self, data: Any) -> list[str]:
        return validate(data, self.input_schema)

    @abstractmethod
    async def run(self, data: dict[str, Any], ctx: ToolContext) -> ToolResult: ...
