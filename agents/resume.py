"""Resume an agent session from its stream after a crash: recorded work is served from
the trail, never done again.

``load_session`` reads ``session-<id>`` and rebuilds what the live loop held in memory:
the conversation (the prompt, each ``model.responded``'s content, each tool's result as
the model saw it), the counters (turns, usage, cost, tool calls, denials) and where the
session stopped. ``AgentSession.run(resume=log)`` then continues *live*, appending to the
same stream with ``expected_version`` = the head it read, so two resumers cannot both
continue one session (the second gets ``SessionTaken`` and writes nothing).

What is never repeated:

* a model turn whose ``model.responded`` is recorded is not asked again (its content is
  the assistant message of the rebuilt conversation);
* a tool call whose ``tool.completed`` or ``tool.denied`` is recorded is not executed
  again (its recorded output is its result; a denial is the ``Permission denied: ...``
  error the model saw).

The action in flight, and the policy for it:

* a ``model.called`` with no outcome: the call is made again (same turn, next attempt);
  nothing of it was recorded, so nothing is served twice.
* a ``tool.requested`` with no outcome and no pending approval was *running* when the
  process died (the loop makes ``tool.requested`` durable right before a tool starts). It
  may have run partly or fully, so it is **not run again**: the resumer records its
  ``tool.completed`` with ``is_error: true``, ``error_kind: "interrupted"``,
  ``resumed: true``, and the model is told so and can check and retry. Only tools with no
  effects (``REEXECUTE_SAFE``: Read, Glob, Grep) are executed again, recorded with
  ``resumed: true, reexecuted: true``. At most once, never twice.
* ``approval.requested`` with no ``approval.resolved``: nothing ran; the call goes through
  the permission check and the approver again. ``approval.resolved`` refusing it with no
  ``tool.denied``: the denial is recorded.
* tool calls of the last recorded turn that were never requested run normally.

A tool output longer than the event cap (``EVENT_OUTPUT_CAP``, 10,000 characters) is
recorded cut, with its sha256 and length: the resumed conversation shows the model the
recorded text with its ``[output truncated: ...]`` note, not the full output the original
model saw. Those calls are listed in ``agent.resumed`` (``capped_outputs``). Replay
fingerprints ignore tool outputs, so this does not affect matching.

Resumption is recorded as one ``agent.resumed`` event (from_version, turns recorded, what
was interrupted, which provider continues).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agents.errors import AgentError
from agents.providers.base import Message

if TYPE_CHECKING:
    from eventstore.base import EventStore
    from eventstore.model import RecordedEvent

#: Tools with no effects outside the session: an interrupted call is simply run again.
REEXECUTE_SAFE = frozenset({"Read", "Glob", "Grep"})

#: ``agent.failed`` statuses a session may be resumed from (a Ctrl-C is not an ending).
RESUMABLE_FAILURES = frozenset({"cancelled"})

INTERRUPTED = ("interrupted: the process running this session stopped while this {tool} "
               "call was running, and it was not run again. Its effects are unknown (it may "
               "have run partly or fully): check before repeating it.")


def interrupted_outcome(turn: int, use_id: str, tool: str) -> dict[str, Any]:
    """The ``tool.completed`` data of a call the crash left running: not run again."""
    message = INTERRUPTED.format(tool=tool)
    return {"turn": turn, "tool_use_id": use_id, "tool": tool, "is_error": True,
            "error_kind": "interrupted", "resumed": True, "output": message,
            "output_sha256": hashlib.sha256(message.encode()).hexdigest(),
            "output_chars": len(message), "exit_code": None, "duration_ms": None,
            "files": []}


class ResumeError(AgentError):
    """The session cannot be resumed (no such stream, no start, an inconsistent trail)."""


class SessionFinished(ResumeError):
    """The session already ended; ``status`` and ``data`` are its recorded ending."""

    def __init__(self, message: str, status: str, data: dict[str, Any]) -> None:
        super().__init__(message)
        self.status = status
        self.data = data


class SessionTaken(ResumeError):
    """Someone else appended to the session after we read it (another resumer won)."""


@dataclass
class PendingCall:
    """A tool call of the last recorded turn that has no recorded outcome.

    ``state``: ``running`` (requested, was executing), ``asking`` (approval pending),
    ``refused`` (approval refused, denial not recorded), ``new`` (never requested).
    """

    block: dict[str, Any]
    state: str
    approval: dict[str, Any] | None = None


@dataclass
class SessionLog:
    """A session stream read back: everything ``AgentSession`` needs to continue."""

    session_id: str
    head: int
    started: dict[str, Any]
    started_event_id: str
    started_at: datetime
    last_at: datetime
    run_id: str
    causation_id: str | None
    actor: str
    messages: list[Message] = field(default_factory=list)
    turns: int = 0
    usage: dict[str, int] = field(default_factory=dict)
    cost: float = 0.0
    unpriced: int = 0
    tool_calls: int = 0
    denials: int = 0
    final_text: str = ""
    #: tool calls of the last recorded turn, in order: a result block or a PendingCall
    last_calls: list[dict[str, Any] | PendingCall] = field(default_factory=list)
    #: the last recorded turn asked for no tool: the session's answer is in (stop reason)
    answered: str | None = None
    #: a model call that was in flight: (turn, attempts already made)
    model_in_flight: tuple[int, int] | None = None
    capped: list[str] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)
    previous_status: str = "running"
    resumes: int = 0

    @property
    def stream(self) -> str:
        return f"session-{self.session_id}"

    @property
    def pending(self) -> list[PendingCall]:
        return [c for c in self.last_calls if isinstance(c, PendingCall)]

    @property
    def prompt(self) -> str:
        return str(self.started.get("prompt") or "")

    @property
    def workspace(self) -> str | None:
        w = self.started.get("workspace")
        return w if isinstance(w, str) else None

    @property
    def agent(self) -> str:
        return str(self.started.get("agent") or self.actor.removeprefix("agent:"))

    def elapsed_seconds(self) -> float:
        return max(0.0, (self.last_at - self.started_at).total_seconds())


def stream_name(session: str) -> str:
    return session if session.startswith("session-") else f"session-{session}"


def _result_block(use_id: str, d: dict[str, Any], denied: bool) -> dict[str, Any]:
    if denied:
        return {"type": "tool_result", "tool_use_id": use_id, "is_error": True,
                "content": f"Permission denied: {d.get('reason')}"}
    out = d.get("output")
    return {"type": "tool_result", "tool_use_id": use_id, "is_error": bool(d.get("is_error")),
            "content": out if isinstance(out, str) else ("" if out is None else str(out))}


async def load_session(store: EventStore, session: str) -> SessionLog:
    """Read ``session-<id>`` and rebuild its state; raise ``SessionFinished`` when it ended
    (except a ``cancelled`` ending, which may be resumed) and ``ResumeError`` when there is
    nothing to resume."""
    stream = stream_name(session)
    events = [ev async for ev in store.read_stream(stream)]
    if not events:
        raise ResumeError(f"no session stream {stream!r} in this store")
    return rebuild(events)


def rebuild(events: list[RecordedEvent]) -> SessionLog:
    """The pure part of ``load_session``: recorded events (version order) to a log."""
    from agents.loop import normalise_content

    first = events[0]
    sid = first.stream.removeprefix("session-")
    start = next((e for e in events if e.type == "agent.started"), None)
    if start is None:
        raise ResumeError(f"{first.stream}: no agent.started event; nothing to resume from")
    log = SessionLog(session_id=sid, head=events[-1].version, started=dict(start.data),
                     started_event_id=start.id, started_at=start.occurred_at,
                     last_at=events[-1].occurred_at,
                     run_id=start.correlation_id or sid,
                     causation_id=start.causation_id, actor=start.actor)
    log.messages.append(Message(role="user", content=[{"type": "text", "text": log.prompt}]))
    outcomes: dict[str, dict[str, Any]] = {}  # tool_use_id -> result block
    requested: set[str] = set()
    approvals: dict[str, dict[str, Any]] = {}
    open_uses: list[dict[str, Any]] = []  # tool_use blocks of the last responded turn
    attempts: dict[int, int] = {}
    ending: tuple[str, dict[str, Any]] | None = None

    def close_turn() -> None:
        if not open_uses:
            return
        missing = [u["id"] for u in open_uses if u["id"] not in outcomes]
        if missing:
            raise ResumeError(f"{first.stream}: turn {log.turns} has tool calls without an "
                              f"outcome ({', '.join(missing)}) but a later model turn; the "
                              "trail is inconsistent")
        log.messages.append(Message(role="user",
                                    content=[outcomes[u["id"]] for u in open_uses]))
        open_uses.clear()

    for ev in events:
        d = ev.data if isinstance(ev.data, dict) else {}
        t = ev.type
        if t == "agent.resumed":
            log.resumes += 1
            ending = None
        elif t in ("agent.finished", "agent.failed"):
            ending = (str(d.get("status") or ("failed" if t == "agent.failed"
                                               else "completed")), d)
        elif t == "model.called":
            turn = int(d.get("turn") or log.turns + 1)
            attempts[turn] = max(attempts.get(turn, 0), int(d.get("attempt") or 1))
            close_turn()
        elif t == "model.responded":
            close_turn()
            turn = int(d.get("turn") or log.turns + 1)
            log.turns = turn
            content = normalise_content(list(d.get("content") or []), turn)
            log.messages.append(Message(role="assistant", content=content))
            log.responses.append(d)
            texts = [b.get("text", "") for b in content if b.get("type") == "text"]
            if texts:
                log.final_text = "\n".join(x for x in texts if isinstance(x, str))
            usage = d.get("usage")
            if isinstance(usage, dict):
                for k, v in usage.items():
                    if isinstance(v, int) and not isinstance(v, bool):
                        log.usage[k] = log.usage.get(k, 0) + v
            cost = d.get("cost_usd")
            if isinstance(cost, int | float) and not isinstance(cost, bool):
                log.cost += float(cost)
            else:
                log.unpriced += 1
            open_uses.extend(b for b in content if b.get("type") == "tool_use")
            log.answered = None if open_uses else str(d.get("stop_reason") or "end_turn")
        elif t == "tool.requested":
            requested.add(str(d.get("tool_use_id")))
            log.tool_calls += 1
        elif t == "tool.completed":
            use_id = str(d.get("tool_use_id"))
            outcomes[use_id] = _result_block(use_id, d, denied=False)
            shown = outcomes[use_id]["content"]
            sha = d.get("output_sha256")
            if isinstance(sha, str) and sha != hashlib.sha256(shown.encode()).hexdigest():
                log.capped.append(use_id)  # the event holds less than the model saw
        elif t == "tool.denied":
            use_id = str(d.get("tool_use_id"))
            outcomes[use_id] = _result_block(use_id, d, denied=True)
            log.denials += 1
        elif t in ("approval.requested", "approval.resolved"):
            approvals.setdefault(str(d.get("tool_use_id")), {})[t] = d
    if ending is not None:
        status, data = ending
        if status not in RESUMABLE_FAILURES:
            raise SessionFinished(f"{first.stream} already ended: {status}", status, data)
        log.previous_status = status
    responded_turn = log.turns
    in_flight = max(attempts) if attempts else 0
    if in_flight > responded_turn:
        log.model_in_flight = (in_flight, attempts[in_flight])
    for use in open_uses:
        use_id = use["id"]
        if use_id in outcomes:
            log.last_calls.append(outcomes[use_id])
            continue
        asked = approvals.get(use_id, {})
        if "approval.resolved" in asked and not asked["approval.resolved"].get("approved"):
            log.last_calls.append(PendingCall(use, "refused", asked["approval.resolved"]))
        elif "approval.requested" in asked and "approval.resolved" not in asked:
            log.last_calls.append(PendingCall(use, "asking"))
        elif use_id in requested:
            log.last_calls.append(PendingCall(use, "running"))
        else:
            log.last_calls.append(PendingCall(use, "new"))
    return log


async def close_abandoned(store: EventStore, log: SessionLog, reason: str) -> int:
    """End a session nobody will continue (a review asked again, a claude-code session
    replaced by a new attempt, a sub-session whose parent moved on), so the trail is whole:
    a model call it left in flight gets ``model.failed`` (``abandoned: ...``), each tool
    call it left running ``tool.completed`` (``interrupted``, not run again) and the
    session ``agent.failed`` with status ``abandoned``. Appended at the head read
    (``SessionTaken`` if someone else wrote meanwhile). Returns the events appended."""
    from eventstore.errors import WrongExpectedVersion
    from eventstore.model import NewEvent

    cause = log.causation_id or log.started_event_id
    events = []
    if log.model_in_flight is not None:  # the model call the crash cut off: never answered
        turn, attempt = log.model_in_flight
        events.append(NewEvent(
            type="model.failed", actor=log.actor, correlation_id=log.run_id,
            causation_id=cause, data={
                "turn": turn, "attempt": attempt, "error": f"abandoned: {reason}",
                "status": None, "transient": False, "retry_after": None,
                "will_retry": False, "delay_s": None, "resumed": True}))
    for call in log.pending:
        if call.state != "running":
            continue
        events.append(NewEvent(
            type="tool.completed", actor=log.actor, correlation_id=log.run_id,
            causation_id=cause, data=interrupted_outcome(
                log.turns, str(call.block["id"]), str(call.block.get("name") or "?"))))
    events.append(NewEvent(
        type="agent.failed", actor=log.actor, correlation_id=log.run_id, causation_id=cause,
        data={"status": "abandoned", "error": reason, "error_kind": "abandoned",
              "turns": log.turns, "usage": dict(log.usage),
              "cost_usd": None if log.unpriced else round(log.cost, 8),
              "tool_calls": log.tool_calls, "denials": log.denials, "resumed": True}))
    try:
        await store.append(log.stream, events, log.head)
    except WrongExpectedVersion as exc:
        raise SessionTaken(f"{log.stream} changed while closing it: {exc}") from None
    return len(events)
