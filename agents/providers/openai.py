"""The ``openai`` provider: Chat Completions with function calling, any compatible server.

The conversation is kept in our canonical (Anthropic-style) blocks and converted at this
edge, both ways:

==========================================  =============================================
canonical                                   Chat Completions
==========================================  =============================================
``ModelRequest.system``                     first message ``{"role": "system"}``
user ``text`` / ``image`` blocks            ``{"role": "user", "content": [parts]}``
user ``tool_result`` blocks                 one ``{"role": "tool", "tool_call_id"}`` each,
                                            placed before the user's text; ``is_error``
                                            results are prefixed ``Error:`` (the format
                                            has no error flag)
assistant ``text`` blocks                   ``content`` (joined)
assistant ``tool_use`` blocks               ``tool_calls[].function{name, arguments}``
assistant ``thinking`` blocks               dropped (no equivalent)
``finish_reason`` stop/tool_calls/length    ``stop_reason`` end_turn/tool_use/max_tokens
``usage.prompt_tokens`` (incl. cached)      ``input_tokens`` + ``cache_read_input_tokens``
==========================================  =============================================

Malformed tool calls. Models behind compatible servers do emit arguments that are not
JSON, or JSON that is not an object. That is the model's mistake, not a provider failure,
so it reaches the loop as data: the ``tool_use`` block keeps the raw arguments text as its
``input`` (a string, where a good call has an object) and gets an ``_invalid_input``
marker ``{"raw": <the text>, "error": <why>}``. The loop (``agents.loop``) treats a string
input as unparsed JSON: it does not run the tool, records a ``tool.completed`` with
``is_error`` and ``error_kind`` ``invalid_json``/``invalid_input``, and answers the model
with an ``is_error`` tool_result so it can correct itself. Sent back to a model, the block
carries its raw text again as ``arguments`` (openai) or ``input: {}`` (anthropic, which
requires an object); private ``_`` keys are never sent.

Configuration (``providers.openai``): ``base_url`` (else ``OPENAI_BASE_URL``; Ollama is
``http://localhost:11434/v1``), ``api_key_env`` (default ``OPENAI_API_KEY``; local servers
accept any value), ``timeout``, ``stream``, ``stream_usage``, ``max_tokens_param``,
``headers``.
"""

from __future__ import annotations

import json
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

DEFAULT_BASE_URL = "https://api.openai.com/v1"
INVALID = "_invalid_input"

FINISH = {"stop": "end_turn", "tool_calls": "tool_use", "function_call": "tool_use",
          "length": "max_tokens", "content_filter": "refusal"}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for b in content:
            if isinstance(b, dict) and b.get("type") == "text":
                parts.append(str(b.get("text", "")))
            elif isinstance(b, dict):
                parts.append(f"[{b.get('type', 'block')} omitted]")
        return "\n".join(parts)
    return "" if content is None else str(content)


def _user_part(block: Block) -> dict[str, Any] | None:
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": block.get("text", "")}
    if kind == "image":
        src = block.get("source") or {}
        if src.get("type") == "base64":
            url = f"data:{src.get('media_type', 'image/png')};base64,{src.get('data', '')}"
        else:
            url = str(src.get("url", ""))
        return {"type": "image_url", "image_url": {"url": url}}
    return None


def _arguments(block: Block) -> str:
    marker = block.get(INVALID)
    if isinstance(marker, dict) and "raw" in marker:
        return str(marker["raw"])
    value = block.get("input")
    if isinstance(value, str):
        return value
    return json.dumps(value or {}, ensure_ascii=False)


def to_chat_messages(request: ModelRequest) -> list[dict[str, Any]]:
    """Canonical conversation to Chat Completions ``messages``."""
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    for msg in request.messages:
        if msg.role == "assistant":
            text = "".join(b.get("text", "") for b in msg.content if b.get("type") == "text")
            calls = [{"id": b["id"], "type": "function",
                      "function": {"name": b["name"], "arguments": _arguments(b)}}
                     for b in msg.content if b.get("type") == "tool_use"]
            entry: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                entry["tool_calls"] = calls
            out.append(entry)
            continue
        parts: list[dict[str, Any]] = []
        for b in msg.content:
            if b.get("type") == "tool_result":
                body = _text_of(b.get("content"))
                if b.get("is_error"):
                    body = f"Error: {body}"
                out.append({"role": "tool", "tool_call_id": b["tool_use_id"], "content": body})
            else:
                part = _user_part(b)
                if part is not None:
                    parts.append(part)
        if parts:
            only_text = all(p["type"] == "text" for p in parts)
            content: Any = "\n".join(p["text"] for p in parts) if only_text else parts
            out.append({"role": "user", "content": content})
    return out


def tool_use_block(call_id: str | None, name: str | None, arguments: str | None,
                   index: int) -> Block:
    """One function call to a canonical ``tool_use`` block; bad arguments are marked."""
    block: Block = {"type": "tool_use", "id": call_id or f"call_{index}",
                    "name": name or "", "input": {}}
    raw = arguments if arguments is not None else ""
    problem: str | None = None
    if not name:
        problem = "the tool call has no function name"
    elif raw.strip() == "":
        return block  # no arguments at all: an empty object, as the servers mean it
    else:
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as exc:
            problem = f"arguments are not valid JSON: {exc.msg} at char {exc.pos}"
        else:
            if isinstance(parsed, dict):
                block["input"] = parsed
            else:
                problem = f"arguments must be a JSON object, got {type(parsed).__name__}"
    if problem:
        block["input"] = raw
        block[INVALID] = {"raw": raw, "error": problem}
    return block


def _usage(u: Any) -> Usage:
    if u is None:
        return Usage()
    cached = 0
    details = getattr(u, "prompt_tokens_details", None)
    if details is not None:
        cached = getattr(details, "cached_tokens", 0) or 0
    prompt = getattr(u, "prompt_tokens", 0) or 0
    return Usage(input_tokens=max(0, prompt - cached),
                 output_tokens=getattr(u, "completion_tokens", 0) or 0,
                 cache_read_input_tokens=cached)


def _finish(reason: str | None, has_calls: bool) -> str:
    if has_calls:
        return "tool_use"
    return FINISH.get(reason or "stop", reason or "end_turn")


class OpenAIProvider:
    """One Chat Completions call per ``complete``; no retries of its own."""

    name = "openai"

    def __init__(self, *, api_key: str | None = None, base_url: str | None = None,
                 settings: HTTPProviderSettings | None = None, stream: bool | None = None,
                 timeout: float | None = None, config: Any | None = None) -> None:
        import openai

        self._sdk = openai
        s = settings or (load_settings(self.name, config) if config is not None
                         else HTTPProviderSettings())
        self.settings = s
        self.stream = s.stream if stream is None else stream
        self.base_url = (base_url or s.base_url or os.environ.get("OPENAI_BASE_URL")
                         or DEFAULT_BASE_URL)
        self._key = find_key(api_key, s.api_key_env, "OPENAI_API_KEY")
        if not self._key:
            raise ProviderError(
                f"openai: no API key: set {s.api_key_env or 'OPENAI_API_KEY'} "
                "(any value works for Ollama, vLLM, llama.cpp)")
        self._client = openai.AsyncOpenAI(
            api_key=self._key, base_url=self.base_url, max_retries=0,
            timeout=timeout or s.timeout, default_headers=s.headers or None)

    @classmethod
    def from_config(cls, config: Any | None = None, **overrides: Any) -> OpenAIProvider:
        return cls(settings=load_settings(cls.name, config), **overrides)

    def build_params(self, request: ModelRequest) -> dict[str, Any]:
        params: dict[str, Any] = {"model": request.model,
                                  "messages": to_chat_messages(request),
                                  self.settings.max_tokens_param: request.max_tokens}
        if request.tools:
            params["tools"] = [{"type": "function", "function": {
                "name": t.name, "description": t.description, "parameters": t.input_schema}}
                for t in request.tools]
        if request.temperature is not None:
            params["temperature"] = request.temperature
        params.update(request.params)
        return params

    async def complete(self, request: ModelRequest) -> ModelResponse:
        params = self.build_params(request)
        try:
            if self.stream:
                return await self._complete_stream(params)
            completion = await self._client.chat.completions.create(**params)
            return self._to_response(completion)
        except ProviderError:
            raise
        except Exception as exc:
            raise classify(exc, self._sdk, provider=self.name, base_url=self.base_url,
                           key=self._key) from exc

    def _to_response(self, completion: Any) -> ModelResponse:
        choices = getattr(completion, "choices", None)
        if not choices:
            raise ProviderError(f"{self.name} at {self.base_url}: the reply has no choices "
                                f"(got {str(completion)[:200]!r})")
        choice = choices[0]
        message = choice.message
        blocks: list[Block] = []
        if message.content:
            blocks.append({"type": "text", "text": message.content})
        calls = message.tool_calls or []
        for i, call in enumerate(calls):
            fn = getattr(call, "function", None)
            blocks.append(tool_use_block(call.id, getattr(fn, "name", None),
                                         getattr(fn, "arguments", None), i))
        return ModelResponse(content=blocks, stop_reason=_finish(choice.finish_reason,
                                                                 bool(calls)),
                             usage=_usage(completion.usage), model=completion.model or "",
                             response_id=completion.id)

    async def _complete_stream(self, params: dict[str, Any]) -> ModelResponse:
        if self.settings.stream_usage:
            params.setdefault("stream_options", {"include_usage": True})
        stream = await self._client.chat.completions.create(stream=True, **params)
        text: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        finish: str | None = None
        usage: Any = None
        model = ""
        rid: str | None = None
        async for chunk in stream:
            rid = rid or chunk.id
            model = model or (chunk.model or "")
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices or []:
                delta = choice.delta
                if delta is not None and delta.content:
                    text.append(delta.content)
                for tc in (delta.tool_calls if delta is not None else None) or []:
                    slot = calls.setdefault(tc.index, {"id": None, "name": "", "args": []})
                    if tc.id:
                        slot["id"] = tc.id
                    if tc.function is not None:
                        if tc.function.name:
                            slot["name"] += tc.function.name
                        if tc.function.arguments:
                            slot["args"].append(tc.function.arguments)
                if choice.finish_reason:
                    finish = choice.finish_reason
        blocks: list[Block] = []
        if text:
            blocks.append({"type": "text", "text": "".join(text)})
        for i, idx in enumerate(sorted(calls)):
            slot = calls[idx]
            blocks.append(tool_use_block(slot["id"], slot["name"], "".join(slot["args"]), i))
        if rid is None:
            raise ProviderError(f"{self.name} at {self.base_url}: the stream ended with no "
                                "chunks")
        return ModelResponse(content=blocks, stop_reason=_finish(finish, bool(calls)),
                             usage=_usage(usage), model=model, response_id=rid)

    async def aclose(self) -> None:
        await self._client.close()
