"""The ``script`` provider: model turns read from a YAML file, for demos and tests.

A script is a list of turns (or a mapping with ``turns:`` and optional ``model:`` and
``usage:`` defaults). Each turn is one model response::

    model: scripted-sonnet          # optional, reported as the response's model
    usage: {input_tokens: 100, output_tokens: 20}   # optional default usage per turn
    turns:
      - text: "Let me look at the app first."
        tool_calls:
          - {name: Read, input: {file_path: app.py}}
      - match: "def health"          # optional: serve only when the latest user message
        text: "Found it."            #   (prompt or tool results) matches this regex
        tool_calls:
          - {name: Bash, input: {command: "python -m pytest -q"}, id: toolu_tests}
      - repeat: 3                    # serve this turn 3 times (or `repeat: true`: forever)
        tool_calls: [{name: TodoWrite, input: {todos: []}}]
      - error: {message: overloaded, status: 529, transient: true, retry_after: 0.01}
      - raw: {content: [{type: text, text: hi}], stop_reason: end_turn}   # verbatim
      - text: "Done: /health is implemented and tested."
        stop_reason: end_turn        # default: tool_use when there are tool calls

Selection: the first turn not yet used up whose ``match`` (if any) matches. So plain
turns play in order, and ``match`` turns act as answers to specific situations. When no
turn is left the provider raises a ``ProviderError`` naming the file and the turn number.
Tool-use ids default to ``toolu_<turn>_<call>_<n>`` (turn index, call index, times served):
deterministic, so a scripted session's fingerprints are stable across runs.

Malformed files fail at load time with ``file: turn N: message``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.providers.base import (
    Block,
    ModelRequest,
    ModelResponse,
    ProviderError,
    TransientProviderError,
    Usage,
)

_TURN_KEYS = frozenset({"text", "tool_calls", "match", "repeat", "error", "raw", "stop_reason",
                        "usage", "model", "thinking", "id"})
_CALL_KEYS = frozenset({"name", "input", "id"})


class ScriptError(ProviderError):
    """A script file is malformed (raised at load time) or ran out of turns."""


@dataclass
class _Turn:
    index: int  # 1-based, as shown in errors
    content: list[Block]
    stop_reason: str
    usage: Usage
    model: str | None
    match: re.Pattern[str] | None
    repeat: int | None  # None = forever
    error: dict[str, Any] | None
    served: int = 0
    calls: list[tuple[str | None, str, Any]] = field(default_factory=list)


def _fail(where: str, message: str) -> ScriptError:
    return ScriptError(f"{where}: {message}")


def _usage(value: Any, where: str) -> Usage:
    if value is None:
        return Usage()
    if not isinstance(value, dict):
        raise _fail(where, "usage must be a mapping of token counts")
    try:
        return Usage(**value)
    except Exception as exc:
        raise _fail(where, f"invalid usage: {exc}".splitlines()[0]) from None


def parse_turns(data: Any, source: str) -> tuple[list[_Turn], str | None]:
    """Validate a loaded YAML document; errors name ``source`` and the turn."""
    default_usage = Usage()
    model: str | None = None
    if isinstance(data, dict):
        unknown = set(data) - {"turns", "model", "usage"}
        if unknown:
            raise _fail(source, f"unknown top-level keys {sorted(unknown)} (expected turns, "
                        "model, usage)")
        model = data.get("model")
        if model is not None and not isinstance(model, str):
            raise _fail(source, "model must be a string")
        default_usage = _usage(data.get("usage"), source)
        data = data.get("turns")
    if not isinstance(data, list) or not data:
        raise _fail(source, "a script is a non-empty list of turns (or a mapping with turns:)")
    turns = []
    for i, raw in enumerate(data, 1):
        where = f"{source}: turn {i}"
        if isinstance(raw, str):
            raw = {"text": raw}
        if not isinstance(raw, dict):
            raise _fail(where, f"a turn is a mapping (text/tool_calls/...), got "
                        f"{type(raw).__name__}")
        unknown = set(raw) - _TURN_KEYS
        if unknown:
            raise _fail(where, f"unknown keys {sorted(unknown)}; a turn may have "
                        f"{', '.join(sorted(_TURN_KEYS))}")
        match = None
        if raw.get("match") is not None:
            try:
                match = re.compile(str(raw["match"]))
            except re.error as exc:
                raise _fail(where, f"match is not a valid regex: {exc}") from None
        rep = raw.get("repeat", 1)
        if rep is True:
            repeat: int | None = None
        elif isinstance(rep, int) and not isinstance(rep, bool) and rep >= 1:
            repeat = rep
        else:
            raise _fail(where, f"repeat must be a positive integer or true, got {rep!r}")
        error = raw.get("error")
        if error is not None:
            if isinstance(error, str):
                error = {"message": error}
            if not isinstance(error, dict) or set(error) - {"message", "status", "transient",
                                                            "retry_after"}:
                raise _fail(where, "error is a message or {message, status, transient, "
                            "retry_after}")
        content: list[Block] = []
        calls: list[tuple[str | None, str, Any]] = []
        if "raw" in raw:
            body = raw["raw"]
            if not isinstance(body, dict) or not isinstance(body.get("content"), list):
                raise _fail(where, "raw must be a mapping with a content list")
            content = list(body["content"])
            stop = str(body.get("stop_reason", "end_turn"))
        else:
            if raw.get("thinking") is not None:
                content.append({"type": "thinking", "thinking": str(raw["thinking"]),
                                "signature": ""})
            if raw.get("text") is not None:
                if not isinstance(raw["text"], str):
                    raise _fail(where, "text must be a string")
                content.append({"type": "text", "text": raw["text"]})
            tc = raw.get("tool_calls") or []
            if not isinstance(tc, list):
                raise _fail(where, "tool_calls must be a list of {name, input}")
            for j, call in enumerate(tc, 1):
                if not isinstance(call, dict) or not isinstance(call.get("name"), str) \
                        or not call["name"]:
                    raise _fail(where, f"tool call {j}: needs a name (e.g. {{name: Read, "
                                "input: {file_path: x}})")
                unknown = set(call) - _CALL_KEYS
                if unknown:
                    raise _fail(where, f"tool call {j}: unknown keys {sorted(unknown)}")
                call_id = call.get("id")
                calls.append((str(call_id) if call_id is not None else None, call["name"],
                              call.get("input", {})))
            if not content and not calls and error is None:
                raise _fail(where, "a turn needs text, tool_calls, error or raw")
            stop = str(raw.get("stop_reason") or ("tool_use" if calls else "end_turn"))
        turns.append(_Turn(i, content, stop, _usage(raw.get("usage"), where)
                           if raw.get("usage") is not None else default_usage,
                           raw.get("model"), match, repeat, error, calls=calls))
    return turns, model


def load_script(path: Path | str) -> tuple[list[_Turn], str | None]:
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScriptError(f"{p}: cannot read script: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ScriptError(f"{p}{line}: {problem}") from None
    return parse_turns(data, str(p))


def _latest_user_text(request: ModelRequest) -> str:
    for message in reversed(request.messages):
        if message.role != "user":
            continue
        parts = []
        for block in message.content:
            if block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            elif block.get("type") == "tool_result":
                c = block.get("content")
                if isinstance(c, list):
                    parts += [str(x.get("text", "")) for x in c if isinstance(x, dict)]
                else:
                    parts.append(str(c))
        return "\n".join(parts)
    return ""


class ScriptProvider:
    """Serves the turns of a script file (or of an already-parsed list of turns)."""

    name = "script"

    def __init__(self, path: Path | str | None = None, *, turns: list[Any] | None = None,
                 model: str | None = None, **_: Any) -> None:
        if path is not None:
            self.source = str(path)
            self.turns, file_model = load_script(path)
        elif turns is not None:
            self.source = "<script>"
            self.turns, file_model = parse_turns(turns, self.source)
        else:
            raise ScriptError("the script provider needs a script file (--script FILE)")
        self.model = model or file_model or "script"
        self.calls = 0

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        latest = None
        for turn in self.turns:
            if turn.repeat is not None and turn.served >= turn.repeat:
                continue
            if turn.match is not None:
                if latest is None:
                    latest = _latest_user_text(request)
                if not turn.match.search(latest):
                    continue
            return self._serve(turn)
        raise ScriptError(f"{self.source}: no script turn left for model call {self.calls} "
                          f"(the script has {len(self.turns)} turns, all used or unmatched)")

    def resume_after(self, responses: list[dict[str, Any]]) -> None:
        """Skip the turns a resumed session already has (``agents.resume``): each recorded
        ``model.responded`` names its turn in ``response_id`` (``script-<turn>-<n>``), and a
        plain turn before the last one served must have been used up (plain turns play in
        order). Error turns that only match-selected can not be told apart; they serve
        again."""
        last = 0
        for data in responses:
            m = re.fullmatch(r"script-(\d+)-(\d+)", str(data.get("response_id") or ""))
            if m is None or not 1 <= int(m[1]) <= len(self.turns):
                continue
            turn = self.turns[int(m[1]) - 1]
            turn.served = max(turn.served, int(m[2]))
            last = max(last, turn.index)
            self.calls += 1
        for turn in self.turns[:max(last - 1, 0)]:
            if turn.match is None and turn.repeat is not None:
                turn.served = max(turn.served, turn.repeat)

    def _serve(self, turn: _Turn) -> ModelResponse:
        turn.served += 1
        if turn.error is not None:
            msg = f"{self.source}: turn {turn.index}: {turn.error.get('message', 'error')}"
            status = turn.error.get("status")
            if turn.error.get("transient", False):
                raise TransientProviderError(msg, status=status,
                                             retry_after=turn.error.get("retry_after"))
            raise ProviderError(msg, status=status)
        content = [dict(b) if isinstance(b, dict) else b for b in turn.content]
        for j, (call_id, name, data) in enumerate(turn.calls, 1):
            content.append({"type": "tool_use",
                            "id": call_id or f"toolu_{turn.index}_{j}_{turn.served}",
                            "name": name, "input": data})
        return ModelResponse.model_construct(
            content=content, stop_reason=turn.stop_reason, usage=turn.usage,
            model=turn.model or self.model, response_id=f"script-{turn.index}-{turn.served}")

    async def aclose(self) -> None:
        return None
