"""Scripted model APIs on 127.0.0.1 that speak the real wire protocols.

The model APIs are the one thing tests here cannot reach, so these servers stand in for
them: the official ``anthropic`` and ``openai`` SDKs and the real ``claude`` binary talk
to them unmodified over HTTP (``ANTHROPIC_BASE_URL`` / ``base_url``). Each server plays a
script of turns; a turn is either a fixed reply or a function of the request (to route
by system prompt, e.g. main agent versus subagent). Every request is recorded, so a test
can assert what the client actually sent.

Anthropic: ``POST /v1/messages`` (JSON, or SSE when ``"stream": true``: message_start,
content_block_start/delta/stop with text_delta and input_json_delta, message_delta,
message_stop), ``POST /v1/messages/count_tokens``. OpenAI: ``POST /v1/chat/completions``
(JSON, or SSE chunks with ``choices[0].delta`` and tool_call deltas, then ``[DONE]``).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = dict[str, Any]
Turn = Reply | Callable[[dict[str, Any]], Reply]

_ids = itertools.count(1)


def text(t: str) -> Reply:
    """An assistant turn that ends with text."""
    return {"content": [{"type": "text", "text": t}], "stop_reason": "end_turn"}


def tool_use(name: str, tool_input: dict[str, Any], *, preface: str | None = None,
             tool_id: str | None = None) -> Reply:
    """An assistant turn that calls one tool (Anthropic shape; OpenAI server converts)."""
    blocks: list[dict[str, Any]] = []
    if preface:
        blocks.append({"type": "text", "text": preface})
    blocks.append({"type": "tool_use", "id": tool_id or f"toolu_{next(_ids):06d}",
                   "name": name, "input": tool_input})
    return {"content": blocks, "stop_reason": "tool_use"}


def error(status: int, message: str = "scripted error", kind: str = "api_error",
          headers: dict[str, str] | None = None) -> Reply:
    """A transient or fatal HTTP error for retry tests (429, 500, 529 ...)."""
    return {"__error__": status, "message": message, "kind": kind, "headers": headers or {}}


def raw(status: int, body: str, content_type: str = "application/json") -> Reply:
    """Any bytes at all as the reply body (garbage, truncated JSON, HTML error pages)."""
    return {"__raw__": status, "body": body, "content_type": content_type}


def _send_raw(h: BaseHTTPRequestHandler, reply: Reply) -> None:
    body = str(reply["body"]).encode()
    h.send_response(int(reply["__raw__"]))
    h.send_header("content-type", str(reply["content_type"]))
    h.send_header("content-length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


@dataclass
class Script:
    """Turns played in order; ``fallback`` answers anything past the end."""

    turns: list[Turn] = field(default_factory=list)
    fallback: Turn | None = field(default_factory=lambda: text("done"))
    requests: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_reply(self, request: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append(request)
            turn = self.turns.pop(0) if self.turns else self.fallback
        if turn is None:
            return error(500, "script exhausted")
        return turn(request) if callable(turn) else turn


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Base:
    """Start/stop and the request plumbing shared by both servers."""

    handler: type[BaseHTTPRequestHandler]

    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self.paths: list[str] = []
        outer = self

        class Handler(self.handler):  # type: ignore[name-defined,misc]
            server_outer = outer

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> _Base:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _read_json(h: BaseHTTPRequestHandler) -> dict[str, Any]:
    size = int(h.headers.get("content-length") or 0)
    body = h.rfile.read(size) if size else b"{}"
    try:
        parsed = json.loads(body or b"{}")
    except json.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _send_json(h: BaseHTTPRequestHandler, status: int, doc: dict[str, Any],
               headers: dict[str, str] | None = None) -> None:
    body = json.dumps(doc).encode()
    h.send_response(status)
    h.send_header("content-type", "application/json")
    h.send_header("content-length", str(len(body)))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(body)


def _sse(h: BaseHTTPRequestHandler, chunks: list[tuple[str | None, Any]]) -> None:
    h.send_response(200)
    h.send_header("content-type", "text/event-stream")
    h.send_header("cache-control", "no-cache")
    h.send_header("connection", "close")
    h.end_headers()
    for event, data in chunks:
        payload = data if isinstance(data, str) else json.dumps(data)
        line = (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"
        h.wfile.write(line.encode())
        h.wfile.flush()
    h.close_connection = True


def _usage(request: dict[str, Any], reply: Reply) -> dict[str, int]:
    usage = reply.get("usage") or {}
    return {
        "input_tokens": int(usage.get("input_tokens", 10 + len(json.dumps(request)) // 40)),
        "output_tokens": int(usage.get("output_tokens",
                                       5 + len(json.dumps(reply["content"])) // 40)),
    }


class AnthropicHandler(BaseHTTPRequestHandler):
    server_outer: AnthropicServer
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        outer = self.server_outer
        path = self.path.split("?", 1)[0]
        outer.paths.append(path)
        request = _read_json(self)
        if path.endswith("/count_tokens"):
            _send_json(self, 200, {"input_tokens": 10 + len(json.dumps(request)) // 40})
            return
        if not path.endswith("/v1/messages"):
            _send_json(self, 404, {"type": "error", "error": {
                "type": "not_found_error", "message": f"no route {path}"}})
            return
        reply = outer.script.next_reply(request)
        if "__raw__" in reply:
            _send_raw(self, reply)
            return
        if "__error__" in reply:
            status = int(reply["__error__"])
            kind = reply.get("kind", "api_error")
            if status == 429:
                kind = "rate_limit_error"
            elif status == 529:
                kind = "overloaded_error"
            _send_json(self, status, {"type": "error", "error": {
                "type": kind, "message": reply.get("message", "")}},
                {**({"retry-after": "0"} if status in (429, 529) else {}),
                 **reply.get("headers", {})})
            return
        msg_id = f"msg_{next(_ids):08d}"
        model = request.get("model", "claude-sonnet-4-5")
        usage = _usage(request, reply)
        if not request.get("stream"):
            _send_json(self, 200, {
                "id": msg_id, "type": "message", "role": "assistant", "model": model,
                "content": reply["content"], "stop_reason": reply["stop_reason"],
                "stop_sequence": None, "usage": usage})
            return
        chunks: list[tuple[str | None, Any]] = [("message_start", {
            "type": "message_start", "message": {
                "id": msg_id, "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1}}})]
        for i, block in enumerate(reply["content"]):
            if block["type"] == "text":
                chunks.append(("content_block_start", {"type": "content_block_start",
                               "index": i, "content_block": {"type": "text", "text": ""}}))
                t = block["text"]
                for part in [t[j:j + 40] for j in range(0, len(t), 40)] or [""]:
                    chunks.append(("content_block_delta", {"type": "content_block_delta",
                                   "index": i, "delta": {"type": "text_delta", "text": part}}))
            elif block["type"] == "tool_use":
                chunks.append(("content_block_start", {"type": "content_block_start",
                               "index": i, "content_block": {
                                   "type": "tool_use", "id": block["id"],
                                   "name": block["name"], "input": {}}}))
                raw = json.dumps(block["input"])
                for part in [raw[j:j + 30] for j in range(0, len(raw), 30)]:
                    chunks.append(("content_block_delta", {"type": "content_block_delta",
                                   "index": i, "delta": {"type": "input_json_delta",
                                                         "partial_json": part}}))
            chunks.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
        chunks.append(("message_delta", {"type": "message_delta", "delta": {
            "stop_reason": reply["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]}}))
        chunks.append(("message_stop", {"type": "message_stop"}))
        _sse(self, chunks)


class AnthropicServer(_Base):
    """``with AnthropicServer(Script([...])) as api: ... ANTHROPIC_BASE_URL=api.url``."""

    handler = AnthropicHandler


def _to_openai(reply: Reply) -> tuple[str | None, list[dict[str, Any]], str]:
    text_parts = [b["text"] for b in reply["content"] if b["type"] == "text"]
    calls = [{"id": b["id"], "type": "function", "function": {
        "name": b["name"], "arguments": b.get("raw_arguments", json.dumps(b["input"]))}}
        for b in reply["content"] if b["type"] == "tool_use"]
    finish = "tool_calls" if calls else "stop"
    return ("".join(text_parts) or None), calls, finish


class OpenAIHandler(BaseHTTPRequestHandler):
    server_outer: OpenAIServer
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        outer = self.server_outer
        path = self.path.split("?", 1)[0]
        outer.paths.append(path)
        request = _read_json(self)
        if not path.endswith("/chat/completions"):
            _send_json(self, 404, {"error": {"message": f"no route {path}",
                                             "type": "invalid_request_error"}})
            return
        reply = outer.script.next_reply(request)
        if "__raw__" in reply:
            _send_raw(self, reply)
            return
        if "__error__" in reply:
            _send_json(self, int(reply["__error__"]), {"error": {
                "message": reply.get("message", ""), "type": reply.get("kind", "server_error")}},
                reply.get("headers") or None)
            return
        content, calls, finish = _to_openai(reply)
        usage = _usage(request, reply)
        oa_usage = {"prompt_tokens": usage["input_tokens"],
                    "completion_tokens": usage["output_tokens"],
                    "total_tokens": usage["input_tokens"] + usage["output_tokens"]}
        cid = f"chatcmpl-{next(_ids):08d}"
        model = request.get("model", "gpt-4o")
        if not request.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if calls:
                message["tool_calls"] = calls
            _send_json(self, 200, {"id": cid, "object": "chat.completion", "created": 0,
                                   "model": model, "choices": [{"index": 0, "message": message,
                                   "finish_reason": finish}], "usage": oa_usage})
            return
        base = {"id": cid, "object": "chat.completion.chunk", "created": 0, "model": model}
        chunks: list[tuple[str | None, Any]] = [(None, {**base, "choices": [{
            "index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})]
        if content:
            for j in range(0, len(content), 40):
                chunks.append((None, {**base, "choices": [{"index": 0, "delta": {
                    "content": content[j:j + 40]}, "finish_reason": None}]}))
        for k, call in enumerate(calls):
            args = call["function"]["arguments"]
            chunks.append((None, {**base, "choices": [{"index": 0, "delta": {"tool_calls": [{
                "index": k, "id": call["id"], "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""}}]},
                "finish_reason": None}]}))
            for j in range(0, len(args), 30):
                chunks.append((None, {**base, "choices": [{"index": 0, "delta": {"tool_calls": [{
                    "index": k, "function": {"arguments": args[j:j + 30]}}]},
                    "finish_reason": None}]}))
        chunks.append((None, {**base, "choices": [{"index": 0, "delta": {},
                                                   "finish_reason": finish}]}))
        if (request.get("stream_options") or {}).get("include_usage"):
            chunks.append((None, {**base, "choices": [], "usage": oa_usage}))
        chunks.append((None, "[DONE]"))
        _sse(self, chunks)


class OpenAIServer(_Base):
    """``with OpenAIServer(Script([...])) as api: OpenAI(base_url=api.url + '/v1')``."""

    handler = OpenAIHandler
