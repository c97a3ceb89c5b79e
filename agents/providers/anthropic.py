"""The ``anthropic`` provider: the Messages API through the official SDK.

Our canonical blocks *are* Messages API blocks, so the request is nearly a pass-through;
the work here is the edges: private keys (``_...``) stripped before sending, the reply's
blocks turned back into plain dicts, usage including prompt-cache tokens, and every SDK
exception mapped to ``TransientProviderError`` (retried by the loop) or ``ProviderError``.
The client is built with ``max_retries=0``: the loop retries and records each attempt, a
hidden SDK retry would make the trail lie about what happened.

Configuration (``providers.anthropic`` in orchestrail.yaml, all optional): ``base_url``
(else ``ANTHROPIC_BASE_URL``, else the public API), ``api_key_env`` (the variable to read
the key from, default ``ANTHROPIC_API_KEY``), ``timeout`` seconds, ``stream`` (use SSE
internally; the result is the same ``ModelResponse``), ``headers``.
"""

from __future__ import annotations

import os
from typing import Any

from agents.providers._http import HTTPProviderSettings, classify, find_key, load_settings
from agents.providers.base import (
    Block,
    ModelRequest,
    ModelResponse,
    ProviderError,
    Usage,
)

DEFAULT_BASE_URL = "https://api.anthropic.com"


def _clean(block: Block) -> Block:
    """Drop our private annotations (``_invalid_input`` ...) that the API would reject."""
    out = {k: v for k, v in block.items() if not k.startswith("_")}
    if out.get("type") == "tool_use" and not isinstance(out.get("input"), dict):
        out["input"] = {}  # a malformed call from another provider (see providers.openai)
    if out.get("type") == "tool_result" and isinstance(out.get("content"), list):
        out["content"] = [_clean(b) for b in out["content"]]
    return out


def build_params(request: ModelRequest) -> dict[str, Any]:
    """The keyword arguments of ``messages.create`` for one canonical request."""
    params: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": [{"role": m.role, "content": [_clean(b) for b in m.content]}
                     for m in request.messages],
    }
    if request.system:
        params["system"] = request.system
    if request.tools:
        params["tools"] = [{"name": t.name, "description": t.description,
                            "input_schema": t.input_schema} for t in request.tools]
    if request.temperature is not None:
        params["temperature"] = request.temperature
    params.update(request.params)
    return params


def to_response(message: Any) -> ModelResponse:
    """An SDK ``Message`` to our ``ModelResponse`` (plain-dict blocks, full usage)."""
    blocks = [b.model_dump(mode="json", exclude_none=True) for b in message.content]
    u = message.usage
    usage = Usage(input_tokens=u.input_tokens or 0, output_tokens=u.output_tokens or 0,
                  cache_read_input_tokens=getattr(u, "cache_read_input_tokens", 0) or 0,
                  cache_creation_input_tokens=getattr(u, "cache_creation_input_tokens", 0) or 0)
    if not isinstance(message.stop_reason, str):
        raise ProviderError(f"reply {message.id!r} has no stop_reason")
    return ModelResponse(content=blocks, stop_reason=message.stop_reason, usage=usage,
                         model=message.model or "", response_id=message.id)


class AnthropicProvider:
    """One Messages API call per ``complete``; no retries of its own."""

    name = "anthropic"

    def __init__(self, *, api_key: str | None = None, base_url: str | None = None,
                 settings: HTTPProviderSettings | None = None, stream: bool | None = None,
                 timeout: float | None = None, config: Any | None = None) -> None:
        import anthropic

        self._sdk = anthropic
        s = settings or (load_settings(self.name, config) if config is not None
                         else HTTPProviderSettings())
        self.stream = s.stream if stream is None else stream
        self.base_url = (base_url or s.base_url or os.environ.get("ANTHROPIC_BASE_URL")
                         or DEFAULT_BASE_URL)
        self._key = find_key(api_key, s.api_key_env, "ANTHROPIC_API_KEY")
        if not self._key:
            raise ProviderError(
                f"anthropic: no API key: set {s.api_key_env or 'ANTHROPIC_API_KEY'} "
                "(any value works for a local test server)")
        self._client = anthropic.AsyncAnthropic(
            api_key=self._key, base_url=self.base_url, max_retries=0,
            timeout=timeout or s.timeout, default_headers=s.headers or None)

    @classmethod
    def from_config(cls, config: Any | None = None, **overrides: Any) -> AnthropicProvider:
        return cls(settings=load_settings(cls.name, config), **overrides)

    async def complete(self, request: ModelRequest) -> ModelResponse:
        params = build_params(request)
        try:
            if self.stream:
                async with self._client.messages.stream(**params) as stream:
                    message = await stream.get_final_message()
            else:
                message = await self._client.messages.create(**params)
            return to_response(message)
        except ProviderError:
            raise
        except Exception as exc:
            raise classify(exc, self._sdk, provider=self.name, base_url=self.base_url,
                           key=self._key) from exc

    async def aclose(self) -> None:
        await self._client.close()
