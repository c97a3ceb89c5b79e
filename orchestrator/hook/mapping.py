"""Claude Code hook JSON -> our events (standard library only: this runs on every tool call).

Streams: a Claude Code session id is the run id. ``run-<session_id>`` holds the session's
lifecycle (``run.started`` / ``run.finished``), ``session-<session_id>`` the main agent,
``session-<agent_id>`` each subagent. Every event carries ``correlation_id = session_id``.

Event ids are derived, not random, wherever an event has a natural key: the
``tool.requested`` of a call is ``uuid5(stream, tool_use_id)``, so its completion can name
it as causation without a lookup, and the outcome of a call (``tool.completed`` or
``tool.denied``) shares one id, so a call gets exactly one outcome however many paths
report it (PostToolUse, PermissionDenied, the transcript reconciliation at Stop). Other
events take ``uuid5(invocation key, index)``: a spooled hook delivered twice writes nothing
the second time.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from eventstore.canonical import actor_problem, stream_name_problem

#: Namespace of every derived event id (uuid5); fixed forever, ids must stay stable.
NAMESPACE = uuid.UUID("6f1c2d8e-6b0a-5d43-9a57-0c1a7e3b9f21")
ACTOR = "claude-code"
SOURCE = "claude-code-hook"
#: Characters of a tool's output kept in ``tool.completed`` (the sha256 covers all of it).
OUTPUT_CAP = 16_000
AGENT_TOOLS = ("Agent", "Task")
#: Fields every hook sends; the rest of a payload is the event-specific part.
COMMON = frozenset({"session_id", "transcript_path", "cwd", "permission_mode",
                    "hook_event_name", "agent_id", "agent_type", "prompt_id", "effort"})
_BAD_TYPE_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_BAD_STREAM_CHARS = re.compile(r"[^A-Za-z0-9_.:@/+=-]")


class Lookup(Protocol):
    """What mapping may ask the store, inside the append's write transaction."""

    def exists(self, event_id: str) -> bool: ...

    def recent(self, stream: str, type_: str, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """The newest ``limit`` events of ``type_`` in ``stream``: (id, data), newest first."""
        ...


class Ev:
    """One event to append (the hook's own light NewEvent: no pydantic on this path).

    A plain class, not a dataclass: ``dataclasses`` imports ``inspect``, which alone
    costs a large part of the hook's start-up budget."""

    __slots__ = ("actor", "causation_id", "correlation_id", "data", "id", "metadata",
                 "stream", "type")

    def __init__(self, *, stream: str, type: str, data: dict[str, Any], id: str,
                 actor: str = ACTOR, correlation_id: str | None = None,
                 causation_id: str | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        self.stream = stream
        self.type = type
        self.data = data
        self.id = id
        self.actor = actor
        self.correlation_id = correlation_id
        self.causation_id = causation_id
        self.metadata = metadata if metadata is not None else {}


_NAMESPACE_BYTES = NAMESPACE.bytes


def derived_id(*parts: str) -> str:
    """``str(uuid.uuid5(NAMESPACE, "|".join(parts)))``, without building a UUID object
    (the transcript import derives one per event; a unit test holds them equal)."""
    h = hashlib.sha1(_NAMESPACE_BYTES + "|".join(parts).encode()).hexdigest()
    return (f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{(int(h[16], 16) & 0x3) | 0x8:x}{h[17:20]}-"
            f"{h[20:32]}")


def requested_id(stream: str, tool_use_id: str) -> str:
    return derived_id("tool.requested", stream, tool_use_id)


def outcome_id(stream: str, tool_use_id: str) -> str:
    return derived_id("tool.outcome", stream, tool_use_id)


def safe_stream(name: str) -> str:
    if stream_name_problem(name) is None:
        return name
    fixed = _BAD_STREAM_CHARS.sub("_", name)[:200]
    if not fixed[:1].isalnum():
        fixed = "x" + fixed[:199]
    return fixed


def safe_type_segment(name: str) -> str:
    seg = _BAD_TYPE_CHARS.sub("_", name)[:100]
    return seg or "unknown"


def actor_for(agent_type: object) -> str:
    if isinstance(agent_type, str) and agent_type:
        actor = "agent:" + re.sub(r"\s", "_", agent_type)[:190]
        if actor_problem(actor) is None:
            return actor
    return ACTOR


def cap_output(value: Any, dump: Callable[[Any], str]) -> dict[str, Any]:
    """The output as text, capped, with the sha256 and size of all of it."""
    text = value if isinstance(value, str) else dump(value)
    shown = text[:OUTPUT_CAP]
    return {"output": shown, "output_sha256": hashlib.sha256(text.encode()).hexdigest(),
            "output_chars": len(text), "truncated": len(shown) < len(text)}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class Mapper:
    """Maps one hook payload onto events; ``key`` makes its ids reproducible."""

    def __init__(self, payload: dict[str, Any], key: str, lookup: Lookup,
                 dump: Callable[[Any], str]) -> None:
        self.p = payload
        self.key = key
        self.lookup = lookup
        self.dump = dump
        self.n = 0
        sid = _str(payload.get("session_id")) or "unknown"
        self.session_id = sid
        self.event = _str(payload.get("hook_event_name")) or "unknown"
        self.agent_id = _str(payload.get("agent_id"))
        self.agent_type = _str(payload.get("agent_type"))
        self.run_stream = safe_stream(f"run-{sid}")
        self.main_stream = safe_stream(f"session-{sid}")
        self.stream = safe_stream(f"session-{self.agent_id}") if self.agent_id \
            else self.main_stream
        self.actor = actor_for(self.agent_type)
        meta: dict[str, Any] = {"source": SOURCE, "hook_event_name": self.event}
        for k in ("permission_mode", "prompt_id", "cwd", "transcript_path"):
            if payload.get(k) is not None:
                meta[k] = payload[k]
        self.meta = meta
        self.out: list[Ev] = []

    # -- helpers ---------------------------------------------------------------------
    def next_id(self) -> str:
        self.n += 1
        return derived_id(self.key, str(self.n))

    def emit(self, stream: str, type_: str, data: dict[str, Any], *, id_: str | None = None,
             actor: str | None = None, causation: str | None = None) -> Ev:
        ev = Ev(stream=stream, type=type_, data=data, id=id_ or self.next_id(),
                actor=actor or self.actor, correlation_id=self.session_id,
                causation_id=causation, metadata=dict(self.meta))
        self.out.append(ev)
        return ev

    def specific(self) -> dict[str, Any]:
        return {k: v for k, v in self.p.items() if k not in COMMON}

    def tool_ids(self) -> tuple[str | None, str | None]:
        """(tool_use_id, id of its tool.requested when that is stored)."""
        tuid = _str(self.p.get("tool_use_id"))
        if tuid is None:
            return None, None
        req = requested_id(self.stream, tuid)
        return tuid, req if self.lookup.exists(req) else None

    # -- the mapping -------------------------------------------------------------------
    def run(self) -> list[Ev]:
        handler = getattr(self, "on_" + self.event, None)
        if handler is None or not self.event.isidentifier():
            self.generic()
        else:
            handler()
        return self.out

    def generic(self) -> None:
        """Any event without a dedicated mapping (and any future one): kept, never dropped."""
        self.emit(self.stream, "claude.hook." + safe_type_segment(self.event),
                  {"hook_event_name": self.event, "agent_id": self.agent_id,
                   "agent_type": self.agent_type, **self.specific()})

    def on_SessionStart(self) -> None:
        p = self.p
        run = self.emit(self.run_stream, "run.started", {
            "source": "claude-code", "session_id": self.session_id,
            "start_source": p.get("source"), "model": p.get("model"),
            "agent_type": self.agent_type, "session_title": p.get("session_title"),
            "cwd": p.get("cwd"), "transcript_path": p.get("transcript_path")},
            actor=ACTOR)
        self.emit(self.main_stream, "agent.started", {
            "agent": self.agent_type or "claude-code", "provider": "claude-code",
            "model": p.get("model"), "start_source": p.get("source"),
            "claude": {"session_id": self.session_id}}, causation=run.id)

    def on_UserPromptSubmit(self) -> None:
        self.emit(self.stream, "prompt.submitted", {"prompt": self.p.get("prompt")})

    def on_PreToolUse(self) -> None:
        tuid = _str(self.p.get("tool_use_id"))
        data = {"tool_use_id": tuid, "tool": self.p.get("tool_name"),
                "input": self.p.get("tool_input")}
        self.emit(self.stream, "tool.requested", data,
                  id_=requested_id(self.stream, tuid) if tuid else None)

    def _outcome(self, type_: str, data: dict[str, Any]) -> None:
        tuid, req = self.tool_ids()
        self.emit(self.stream, type_, {"tool_use_id": tuid, "tool": self.p.get("tool_name"),
                                       **data},
                  id_=outcome_id(self.stream, tuid) if tuid else None, causation=req)

    def on_PostToolUse(self) -> None:
        resp = self.p.get("tool_response")
        data: dict[str, Any] = {"is_error": False, **cap_output(resp, self.dump),
                                "duration_ms": self.p.get("duration_ms"), "files": []}
        if isinstance(resp, dict):
            path = resp.get("filePath") or resp.get("file_path")
            if isinstance(path, str):
                data["files"] = [{"path": path, "op": resp.get("type")}]
            if resp.get("agentId"):
                data["claude_agent_id"] = resp["agentId"]
                data["agent_status"] = resp.get("status")
        self._outcome("tool.completed", data)

    def on_PostToolUseFailure(self) -> None:
        err = self.p.get("error")
        self._outcome("tool.completed", {
            "is_error": True, **cap_output(err if err is not None else "", self.dump),
            "error": err if isinstance(err, str) else None,
            "is_interrupt": bool(self.p.get("is_interrupt")),
            "duration_ms": self.p.get("duration_ms"), "files": []})

    def on_PermissionDenied(self) -> None:
        reason = self.p.get("reason") or self.p.get("message") or "denied by Claude Code"
        self._outcome("tool.denied", {
            "input": self.p.get("tool_input"), "rule": self.p.get("rule"),
            "reason": reason, "decided_by": "claude-code", "reconciled": False})

    def on_PermissionRequest(self) -> None:
        self.emit(self.stream, "approval.requested", {
            "tool": self.p.get("tool_name"), "input": self.p.get("tool_input"),
            "permission_suggestions": self.p.get("permission_suggestions"),
            "asked_via": "claude-code"})

    def on_SubagentStart(self) -> None:
        spawn = self._spawning_call()
        self.emit(self.stream, "agent.started", {
            "agent": self.agent_type, "provider": "claude-code",
            "parent_session": self.main_stream.removeprefix("session-"),
            "claude": {"session_id": self.session_id, "agent_id": self.agent_id},
            "spawned_by_tool_use_id": spawn[1] if spawn else None},
            id_=derived_id("agent.started", self.stream),
            causation=spawn[0] if spawn else None)

    def _spawning_call(self) -> tuple[str, str] | None:
        """The parent's newest Agent/Task call for this agent type, unanswered so far."""
        for eid, data in self.lookup.recent(self.main_stream, "tool.requested", 25):
            tool_input = data.get("input")
            if data.get("tool") not in AGENT_TOOLS or not isinstance(tool_input, dict):
                continue
            if self.agent_type and tool_input.get("subagent_type") not in (
                    self.agent_type, None):
                continue
            tuid = data.get("tool_use_id")
            if isinstance(tuid, str):
                return eid, tuid
        return None

    def on_SubagentStop(self) -> None:
        self._reconcile(_str(self.p.get("agent_transcript_path")))
        self.emit(self.stream, "agent.finished", {
            "agent": self.agent_type, "status": "completed",
            "final_text": self.p.get("last_assistant_message"),
            "stop_hook_active": self.p.get("stop_hook_active"),
            "agent_transcript_path": self.p.get("agent_transcript_path")},
            causation=derived_id("agent.started", self.stream))

    def on_Stop(self) -> None:
        self._reconcile(_str(self.p.get("transcript_path")))
        self.emit(self.stream, "agent.finished", {
            "agent": self.agent_type or "claude-code", "status": "completed",
            "final_text": self.p.get("last_assistant_message"),
            "stop_hook_active": self.p.get("stop_hook_active"),
            "background_tasks": self.p.get("background_tasks")})

    def on_StopFailure(self) -> None:
        self.emit(self.stream, "agent.failed", {
            "agent": self.agent_type or "claude-code", "status": "failed",
            **self.specific()})

    def on_SessionEnd(self) -> None:
        self.emit(self.run_stream, "run.finished", {
            "source": "claude-code", "session_id": self.session_id,
            "status": "finished", "reason": self.p.get("reason")}, actor=ACTOR)

    def _reconcile(self, transcript: str | None) -> None:
        """``-p`` mode: a refused call is a PreToolUse with no PostToolUse; the transcript
        holds its error tool_result, so the denial is recorded here."""
        if not transcript:
            return
        from orchestrator.hook.transcript import refused_calls

        for call in refused_calls(transcript):
            req = requested_id(self.stream, call.tool_use_id)
            out = outcome_id(self.stream, call.tool_use_id)
            if not self.lookup.exists(req) or self.lookup.exists(out):
                continue
            self.emit(self.stream, "tool.denied", {
                "tool_use_id": call.tool_use_id, "tool": call.tool, "input": call.input,
                "rule": None, "reason": call.reason, "decided_by": "claude-code",
                "reconciled": True}, id_=out, causation=req)


def error_events(problem: str, raw: bytes, key: str, payload: dict[str, Any] | None = None
                 ) -> list[Ev]:
    """``claude.hook.error``: what was wrong, and as much of the input as is readable."""
    sid = _str((payload or {}).get("session_id"))
    stream = safe_stream(f"session-{sid}") if sid else "claude-hooks"
    text = raw.decode("utf-8", errors="replace")
    data = {"error": problem, "raw": text[:OUTPUT_CAP], "raw_bytes": len(raw),
            "raw_sha256": hashlib.sha256(raw).hexdigest(),
            "truncated": len(text) > OUTPUT_CAP,
            "hook_event_name": _str((payload or {}).get("hook_event_name"))}
    return [Ev(stream=stream, type="claude.hook.error", data=data,
               id=derived_id(key, "error"), correlation_id=sid,
               metadata={"source": SOURCE})]
