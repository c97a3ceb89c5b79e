"""The provider interface: one model turn in, one model turn out.

The canonical conversation format is Anthropic's Messages API content blocks (``text``,
``tool_use``, ``tool_result``, ``thinking``) as plain dicts: it is the richest of the
formats we speak, the ``claude`` transcripts use it, and the OpenAI provider converts to
and from Chat Completions at its edge. The agent loop (``agents.loop``) owns everything
else: retries, budgets, events, tools. A provider only talks to its model.

``claude-code`` is different: the ``claude`` binary runs its own loop and tools, so it is
a ``SessionRunner`` (see ``agents.providers.claude_code``), not a ``Provider``.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

Block = dict[str, Any]


class Message(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: Literal["user", "assistant"]
    content: list[Block]


class ToolSpec(BaseModel):
    """What the model is shown for one tool: the same JSON schema inputs are validated with."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    input_schema: dict[str, Any]


class ModelRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str  # a full model id (aliases are resolved before a provider sees them)
    system: str
    messages: list[Message]
    tools: list[ToolSpec] = Field(default_factory=list)
    max_tokens: int = 8192
    temperature: float | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class Usage(BaseModel):
    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


class ModelResponse(BaseModel):
    model_config = ConfigDict(frozen=True)

    content: list[Block]
    stop_reason: str  # end_turn | tool_use | max_tokens | stop_sequence | refusal ...
    usage: Usage = Field(default_factory=Usage)
    model: str = ""
    response_id: str | None = None


class ProviderError(Exception):
    """The provider failed and retrying will not help (bad key, bad request, garbage reply)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientProviderError(ProviderError):
    """Worth retrying with backoff: 429, 5xx, 529 overloaded, timeouts, dropped connections."""

    def __init__(self, message: str, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


@runtime_checkable
class Provider(Protocol):
    """One model turn. Must not retry on its own (the loop retries, and records each try)."""

    name: str

    async def complete(self, request: ModelRequest) -> ModelResponse: ...

    async def aclose(self) -> None: ...
