"""The one fold: a run's events, in position order, become a ``RunState``.

``replay``, ``resume`` and ``audit`` all read a run through this module, so they can never
disagree about what happened. It is pure (no I/O, no clock, no store): the caller reads
events and hands them to ``RunState.apply`` one at a time, which is what makes ``--at``
(stop early) and ``--follow`` (keep applying as events arrive) the same code path as a
plain replay.

Why it is forgiving: a trail outlives the code that wrote it. An event type this version
does not know is kept as an "other" entry; unknown data fields are ignored; a missing
piece (a tool call with no outcome, a session whose stream retention removed) is shown as
*incomplete* with the reason, never raised as an error. Replay never executes anything.

The tree is run -> task -> session -> turn -> tool call. Tool calls hang off their session
(each names its ``turn``), because sessions recorded by a Claude Code hook have tool calls
but no model turns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from eventstore.canonical import format_ts

if TYPE_CHECKING:
    from eventstore.model import RecordedEvent

#: Version of the JSON shape ``RunState.to_dict`` produces (docs/replay.md).
SCHEMA = "orchestrail.replay/1"

USAGE_KEYS = ("input_tokens", "output_tokens", "cache_read_input_tokens",
              "cache_creation_input_tokens")

#: Event types that give the tree its skeleton; ``--type`` filters never drop them.
STRUCTURAL = ("run.", "task.", "agent.", "retention.", "lead.", "review.")


def _ts(value: datetime | None) -> str | None:
    return format_ts(value) if value is not None else None


def _ms(a: datetime | None, b: datetime | None) -> float | None:
    if a is None or b is None:
        return None
    return round((b - a).total_seconds() * 1000, 3)


def _add_usage(into: dict[str, int], usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    for key, value in usage.items():
        if type(value) is int:  # the common case, without the float/bool checks
            into[key] = into.get(key, 0) + value
        elif isinstance(value, float):
            into[key] = into.get(key, 0) + int(value)


def _num(value: Any) -> float | None:
    kind = type(value)
    if kind is float or kind is int:  # the common cases, without the isinstance chain
        return float(value)
    if value is None or kind is bool:
        return None
    return float(value) if isinstance(value, int | float) else None


def total_tokens(usage: dict[str, int]) -> int:
    return sum(v for k, v in usage.items() if k in USAGE_KEYS or k.endswith("_tokens"))


@dataclass(slots=True)
class ToolCall:
    tool_use_id: str
    tool: str
    session_id: str
    turn: int | None = None
    input: Any = None
    requested_at: datetime | None = None
    position: int = 0
    decision: str = "pending"  # allowed | denied | pending
    rule: str | None = None
    reason: str | None = None
    approval: dict[str, Any] | None = None
    output: str | None = None
    output_sha256: str | None = None
    output_chars: int | None = None
    truncated: bool = False
    is_error: bool | None = None
    error_kind: str | None = None
    exit_code: int | None = None
    timed_out: bool = False
    duration_ms: float | None = None
    files: list[Any] = field(default_factory=list)
    completed_at: datetime | None = None
    incomplete: str | None = None

    @property
    def status(self) -> str:
        if self.decision == "denied":
            return "denied"
        if self.completed_at is None:
            return "pending"
        return "error" if self.is_error else "ok"

    def to_dict(self, max_chars: int | None) -> dict[str, Any]:
        out = self.output
        cut = False
        if out is not None and max_chars is not None and len(out) > max_chars:
            out, cut = out[:max_chars], True
        return {
            "tool_use_id": self.tool_use_id, "tool": self.tool, "turn": self.turn,
            "status": self.status, "position": self.position,
            "requested_at": _ts(self.requested_at), "completed_at": _ts(self.completed_at),
            "input": self.input, "decision": self.decision, "rule": self.rule,
            "reason": self.reason, "approval": self.approval, "output": out,
            "output_shown_truncated": cut, "output_truncated": self.truncated,
            "output_sha256": self.output_sha256, "output_chars": self.output_chars,
            "is_error": self.is_error, "error_kind": self.error_kind,
            "exit_code": self.exit_code, "timed_out": self.timed_out,
            "duration_ms": self.duration_ms, "files": self.files,
            "incomplete": self.incomplete,
        }


@dataclass(slots=True)
class Turn:
    number: int
    model: str | None = None
    called_at: datetime | None = None
    responded_at: datetime | None = None
    position: int = 0
    attempts: list[dict[str, Any]] = field(default_factory=list)
    latency_ms: float | None = None
    usage: dict[str, int] = field(default_factory=dict)
    stop_reason: str | None = None
    cost_usd: float | None = None
    text: str = ""
    status: str = "pending"  # pending | responded | failed
    fingerprint: str | None = None

    @property
    def retries(self) -> int:
        return sum(1 for a in self.attempts if a.get("error") is not None)

    def to_dict(self, calls: list[dict[str, Any]], max_chars: int | None) -> dict[str, Any]:
        text = self.text
        if max_chars is not None and len(text) > max_chars:
            text = text[:max_chars]
        return {
            "turn": self.number, "status": self.status, "model": self.model,
            "position": self.position, "called_at": _ts(self.called_at),
            "responded_at": _ts(self.responded_at), "latency_ms": self.latency_ms,
            "usage": self.usage, "stop_reason": self.stop_reason, "cost_usd": self.cost_usd,
            "retries": self.retries, "attempts": self.attempts, "text": text,
            "fingerprint": self.fingerprint, "tool_calls": calls,
            "incomplete": None if self.status != "pending" else
            "model.called with no model.responded or model.failed",
        }


@dataclass(slots=True)
class Session:
    id: str
    agent: str | None = None
    model: str | None = None
    provider: str | None = None
    status: str = "pending"  # pending (dispatched) | running | completed | failed | ...
    parent_session: str | None = None
    task_id: str | None = None
    attempt: int | None = None
    dispatched_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    seen: bool = False
    usage: dict[str, int] = field(default_factory=dict)
    turn_usage: dict[str, int] = field(default_factory=dict)
    recorded_usage: bool = False
    cost_usd: float | None = None
    turn_cost: float = 0.0
    final_text: str | None = None
    error: str | None = None
    error_kind: str | None = None
    budget: Any = None
    definition_hash: str | None = None
    allowed_tools: list[Any] | None = None
    #: what agent.started recorded of the definition (audit: tools used versus allowed)
    tool_rules: list[Any] | None = None
    disallowed_tools: list[Any] | None = None
    permission_mode: str | None = None
    definition_source: str | None = None
    #: ``workspace.diff`` events: the patch the session left in its workspace
    diffs: list[dict[str, Any]] = field(default_factory=list)
    #: the ``agent.started`` data as recorded (prompt, workspace, git state, budgets,
    #: ``rerun_of`` / ``forked_from``): what ``rerun`` starts the session again from
    started_data: dict[str, Any] = field(default_factory=dict)
    turns: dict[int, Turn] = field(default_factory=dict)
    tool_calls: dict[str, ToolCall] = field(default_factory=dict)
    other: list[dict[str, Any]] = field(default_factory=list)
    events: int = 0
    resumes: list[dict[str, Any]] = field(default_factory=list)

    def last_turn(self) -> Turn | None:
        if not self.turns:
            return None
        return self.turns[next(reversed(self.turns))]

    def effective_usage(self) -> dict[str, int]:
        return self.usage if self.recorded_usage else self.turn_usage

    def effective_cost(self) -> float | None:
        if self.cost_usd is not None:
            return self.cost_usd
        return round(self.turn_cost, 8) if self.turn_cost else None


@dataclass(slots=True)
class Task:
    id: str
    title: str | None = None
    agent: str | None = None
    status: str = "unknown"
    attempts: int = 0
    sessions: list[str] = field(default_factory=list)
    result: Any = None
    error: Any = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    seen: bool = False
    #: ``review.requested`` / ``review.completed``: one entry per reviewed attempt
    reviews: list[dict[str, Any]] = field(default_factory=list)


class RunState:
    """Everything known about one run after the events applied so far."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.status = "unknown"
        self.started_at: datetime | None = None
        self.finished_at: datetime | None = None
        self.first_at: datetime | None = None
        self.last_at: datetime | None = None
        self.config: dict[str, Any] = {}
        self.recorded_totals: dict[str, Any] | None = None
        self.resumes: list[dict[str, Any]] = []  # run.resumed events
        self.lead: dict[str, Any] | None = None  # lead.started: the lead's session, agent
        self.tasks: dict[str, Task] = {}
        self.sessions: dict[str, Session] = {}
        self.other: list[dict[str, Any]] = []
        self.events = 0
        self.last_position = 0
        self.has_run_stream = False
        self.removed: dict[str, dict[str, Any]] = {}  # stream -> retention record summary
        self.diffs: list[dict[str, Any]] = []  # workspace.diff naming no session of this run
        self.newest_unknown_fields = False

    # -- applying events -------------------------------------------------------------------
    def apply(self, ev: RecordedEvent) -> None:
        """Fold one event. Must be called in position order; never raises on content."""
        type_ = ev.type
        if type_ == "retention.applied":
            self.note_retention(ev)
            return
        self.events += 1
        if ev.position > self.last_position:
            self.last_position = ev.position
        at = ev.occurred_at
        if self.first_at is None or at < self.first_at:
            self.first_at = at
        if self.last_at is None or at > self.last_at:
            self.last_at = at
        data = ev.data
        if type(data) is not dict:
            data = {}
        stream = ev.stream
        handler = _HANDLERS.get(type_)
        if stream.startswith("session-"):
            sid = stream[8:]
            s = self.sessions.get(sid)
            if s is None:
                s = self.sessions[sid] = Session(sid)
            s.seen = True
            s.events += 1
            if handler is None:
                s.other.append(_other(ev))
                return
            if handler[0] == "session":
                try:
                    handler[1](self, s, ev, data)
                except (TypeError, ValueError, KeyError, AttributeError):
                    s.other.append(_other(ev))  # a shape we do not understand
                return
        elif stream.startswith("run-"):
            self.has_run_stream = True
        if handler is not None:
            fn = handler[1] if handler[0] == "run" else _RUN_HANDLERS.get(type_)
            if fn is not None:
                try:
                    fn(self, None, ev, data)
                    return
                except (TypeError, ValueError, KeyError, AttributeError):
                    pass
        self.other.append(_other(ev))

    def note_retention(self, ev: RecordedEvent) -> None:
        """A ``$retention`` record: remember which streams it removed (for "incomplete")."""
        removed = ev.data.get("removed") if isinstance(ev.data, dict) else None
        for item in removed if isinstance(removed, list) else []:
            if isinstance(item, dict) and isinstance(item.get("stream"), str):
                self.removed[item["stream"]] = {
                    "stream": item["stream"], "count": item.get("count"),
                    "removed_at": format_ts(ev.occurred_at), "position": ev.position}

    def _session(self, sid: str) -> Session:
        s = self.sessions.get(sid)
        if s is None:
            s = self.sessions[sid] = Session(sid)
        return s

    def _task(self, tid: str) -> Task:
        t = self.tasks.get(tid)
        if t is None:
            t = self.tasks[tid] = Task(tid)
        return t

    # -- run-level handlers --------------------------------------------------------------
    def _run_started(self, _: Session | None, ev: RecordedEvent, d: dict[str, Any]) -> None:
        self.started_at = ev.occurred_at
        self.config = d
        if self.status in ("unknown", "pending"):
            self.status = "running"
        for tid in d.get("tasks") or []:
            if isinstance(tid, str):
                self._task(tid)

    def _run_resumed(self, _: Session | None, ev: RecordedEvent, d: dict[str, Any]) -> None:
        """``orchestrail resume`` took the run over: it runs again until its next
        ``run.finished`` (``config`` stays the one ``run.started`` recorded)."""
        self.resumes.append({"position": ev.position, "at": format_ts(ev.occurred_at),
                             "previous_status": d.get("previous_status"),
                             "takeover": d.get("takeover") or []})
        self.status, self.finished_at = "running", None
        for item in d.get("takeover") or []:  # dispatched, never started: replaced
            sid = item.get("abandoned_session") if isinstance(item, dict) else None
            if isinstance(sid, str) and not self._session(sid).seen:
                self._session(sid).status = "abandoned"

    def _run_finished(self, _: Session | None, ev: RecordedEvent, d: dict[str, Any]) -> None:
        self.finished_at = ev.occurred_at
        default = "failed" if ev.type == "run.failed" else "completed"
        self.status = str(d.get("status") or default)
        self.recorded_totals = d

    def _task_event(self, _: Session | None, ev: RecordedEvent, d: dict[str, Any]) -> None:
        tid = d.get("task_id") if isinstance(d.get("task_id"), str) else None
        if tid is None:
            if not ev.stream.startswith("task-"):
                raise ValueError("task event without a task id")
            tid = ev.stream[5:]
        t = self._task(tid)
        t.seen = True
        kind = ev.type[5:]
        if kind == "created":
            t.title = d.get("title", t.title)
            t.agent = d.get("agent", t.agent)
            t.created_at = ev.occurred_at
            if t.status == "unknown":
                t.status = "created"
        elif kind == "dispatched":
            sid = str(d["session_id"])
            t.attempts = max(t.attempts + 1, int(d.get("attempt") or 0))
            if t.agent is None:
                t.agent = d.get("agent")
            if sid not in t.sessions:
                t.sessions.append(sid)
            s = self._session(sid)
            s.task_id, s.attempt = tid, d.get("attempt")
            s.dispatched_at = ev.occurred_at
            s.agent = s.agent or d.get("agent")
            if t.status in ("unknown", "created", "claimed", "released"):
                t.status = "dispatched"
        elif kind in ("completed", "failed"):
            t.status = kind
            t.finished_at = ev.occurred_at
            t.result = d.get("result", t.result)
            t.error = d.get("error", t.error)
        elif kind in ("claimed", "released"):
            t.status = kind
        else:
            t.status = kind

    def _lead_started(self, _: Session | None, ev: RecordedEvent, d: dict[str, Any]) -> None:
        """``run --lead``: the lead session that dispatches this run's tasks."""
        self.lead = {"session_id": d.get("session_id"), "agent": d.get("agent"),
                     "position": ev.position}

    def _review(self, _: Session | None, ev: RecordedEvent, d: dict[str, Any]) -> None:
        """``review.requested`` then ``review.completed`` (``run --review``): the verdict
        on one attempt, kept on its task."""
        t = self._task(str(d["task_id"]))
        rsid = d.get("reviewer_session")
        entry = next((r for r in t.reviews if r["reviewer_session"] == rsid), None)
        if entry is None:
            entry = {"reviewer_session": rsid, "attempt": d.get("attempt"),
                     "session_id": d.get("session_id"), "agent": d.get("agent"),
                     "verdict": "pending", "reason": None, "requested_at": format_ts(
                         ev.occurred_at), "completed_at": None}
            t.reviews.append(entry)
        if ev.type == "review.completed":
            entry.update({"verdict": d.get("verdict"), "reason": d.get("reason"),
                          "completed_at": format_ts(ev.occurred_at)})

    # -- rendering helpers -----------------------------------------------------------------
    def totals(self) -> dict[str, Any]:
        usage: dict[str, int] = {}
        cost = 0.0
        priced = False
        calls = denials = errors = turns = retries = 0
        for s in self.sessions.values():
            _add_usage(usage, s.effective_usage())
            c = s.effective_cost()
            if c is not None:
                cost += c
                priced = True
            turns += len(s.turns)
            retries += sum(t.retries for t in s.turns.values())
            for tc in s.tool_calls.values():
                calls += 1
                denials += tc.decision == "denied"
                errors += bool(tc.is_error) and tc.decision != "denied"
        return {"usage": usage, "tokens": total_tokens(usage),
                "cost_usd": round(cost, 8) if priced else None, "sessions": len(self.sessions),
                "tasks": len(self.tasks), "turns": turns, "retries": retries,
                "tool_calls": calls, "denials": denials, "tool_errors": errors,
                "events": self.events}

    def agents(self) -> list[str]:
        names = {s.agent for s in self.sessions.values() if s.agent}
        cfg = self.config.get("agents")
        if isinstance(cfg, dict):
            names |= {str(k) for k in cfg}
        return sorted(names)

    def incomplete(self) -> list[dict[str, Any]]:
        """Why this run cannot be shown whole: one entry per missing piece."""
        self.finalize_pending()
        out: list[dict[str, Any]] = []
        finished = self.finished_at is not None
        run_stream = f"run-{self.run_id}"
        if run_stream in self.removed:
            out.append({"where": run_stream, "reason": "stream removed by retention",
                        **self.removed[run_stream]})
        for t in self.tasks.values():
            stream = f"task-{t.id}"
            if not t.seen and stream in self.removed:
                out.append({"where": stream, "reason": "stream removed by retention",
                            **self.removed[stream]})
        for s in self.sessions.values():
            stream = f"session-{s.id}"
            if not s.seen:
                if stream in self.removed:
                    out.append({"where": stream, "reason": "stream removed by retention",
                                **self.removed[stream]})
                elif finished and s.status != "abandoned":
                    out.append({"where": stream, "reason": "session was dispatched but "
                                "recorded no events"})
                continue
            if s.started_at is None:
                out.append({"where": stream, "reason": "no agent.started (the start of the "
                            "session is missing)"})
            if s.finished_at is None and finished:
                out.append({"where": stream, "reason": "the run finished but the session has "
                            "no agent.finished or agent.failed"})
            for turn in s.turns.values():
                if turn.status == "pending" and s.finished_at is not None:
                    out.append({"where": f"{stream} turn {turn.number}",
                                "reason": "model.called with no model.responded or "
                                "model.failed"})
            for tc in s.tool_calls.values():
                if tc.incomplete:
                    out.append({"where": f"{stream} {tc.tool_use_id}", "reason": tc.incomplete})
        return out

    def finalize_pending(self) -> None:
        """Mark tool calls that never got an outcome once their session is over."""
        for s in self.sessions.values():
            over = s.finished_at is not None or self.finished_at is not None
            for tc in s.tool_calls.values():
                if tc.decision == "pending" and tc.completed_at is None:
                    # while the session runs, a call without an outcome is just pending
                    tc.incomplete = ("tool.requested with no tool.completed or tool.denied"
                                     " (the session ended without it)" if over else None)
                elif tc.requested_at is None:
                    tc.incomplete = "outcome recorded without its tool.requested"
                else:
                    tc.incomplete = None

    def derived_status(self) -> str:
        if self.status not in ("unknown",):
            return self.status
        # No run.started/run.finished (a Claude Code or standalone session): use the roots.
        roots = [s for s in self.sessions.values() if not s.parent_session]
        if not roots:
            return "unknown"
        states = {s.status for s in roots}
        if states & {"running", "pending"}:
            return "running"
        if "failed" in states:
            return "failed"
        return states.pop() if len(states) == 1 else "completed"

    def to_dict(self, *, max_chars: int | None = 2000) -> dict[str, Any]:
        """The stable JSON shape (``SCHEMA``); see docs/replay.md."""
        self.finalize_pending()
        sessions = []
        for s in self.sessions.values():
            calls_by_turn: dict[int | None, list[dict[str, Any]]] = {}
            for tc in s.tool_calls.values():
                key = tc.turn if tc.turn in s.turns else None
                calls_by_turn.setdefault(key, []).append(tc.to_dict(max_chars))
            children = [c.id for c in self.sessions.values() if c.parent_session == s.id]
            sessions.append({
                "id": s.id, "agent": s.agent, "model": s.model, "provider": s.provider,
                "status": s.status, "task_id": s.task_id, "attempt": s.attempt,
                "parent_session": s.parent_session, "children": children,
                "dispatched_at": _ts(s.dispatched_at), "started_at": _ts(s.started_at),
                "finished_at": _ts(s.finished_at),
                "duration_ms": _ms(s.started_at, s.finished_at),
                "usage": s.effective_usage(), "tokens": total_tokens(s.effective_usage()),
                "cost_usd": s.effective_cost(), "final_text": s.final_text,
                "error": s.error, "error_kind": s.error_kind, "budget": s.budget,
                "definition_hash": s.definition_hash, "allowed_tools": s.allowed_tools,
                "tool_rules": s.tool_rules, "disallowed_tools": s.disallowed_tools,
                "permission_mode": s.permission_mode,
                "workspace_diffs": [diff_dict(d, max_chars) for d in s.diffs],
                "workspace": s.started_data.get("workspace"),
                "role": s.started_data.get("role"),
                "rerun_of": s.started_data.get("rerun_of"),
                "forked_from": s.started_data.get("forked_from"),
                "events": s.events, "resumes": s.resumes,
                "turns": [t.to_dict(calls_by_turn.get(t.number, []), max_chars)
                          for t in s.turns.values()],
                "tool_calls_without_turn": calls_by_turn.get(None, []),
                "other": s.other,
                "removed_by_retention": f"session-{s.id}" in self.removed and not s.seen,
            })
        tasks = [{
            "id": t.id, "title": t.title, "agent": t.agent, "status": t.status,
            "attempts": t.attempts, "sessions": t.sessions, "result": t.result,
            "error": t.error, "created_at": _ts(t.created_at),
            "finished_at": _ts(t.finished_at), "reviews": t.reviews,
        } for t in self.tasks.values()]
        incomplete = self.incomplete()
        started = self.started_at or self.first_at
        ended = self.finished_at or (self.last_at if self.derived_status() != "running" else None)
        return {
            "schema": SCHEMA,
            "run": {
                "id": self.run_id, "status": self.derived_status(),
                "started_at": _ts(started), "finished_at": _ts(self.finished_at),
                "last_event_at": _ts(self.last_at), "duration_ms": _ms(started, ended),
                "last_position": self.last_position, "agents": self.agents(),
                "config": self.config, "recorded_totals": self.recorded_totals,
                "totals": self.totals(), "complete": not incomplete,
                "resumes": self.resumes, "lead": self.lead,
            },
            "tasks": tasks,
            "sessions": sessions,
            "other": self.other,
            "workspace_diffs": [diff_dict(d, max_chars) for d in self.diffs],
            "incomplete": incomplete,
        }

    def _workspace_diff(self, _: Session | None, ev: RecordedEvent, d: dict[str, Any]) -> None:
        """A ``workspace.diff`` on the run stream: hang it on the session it names."""
        sid = d.get("session_id")
        if isinstance(sid, str) and sid:
            self._session(sid).diffs.append(_diff(ev, d))
        else:
            self.diffs.append(_diff(ev, d))


# -- session-level handlers (module functions: a dict lookup, no getattr per event) --------
def _agent_started(st: RunState, s: Session, ev: RecordedEvent, d: dict[str, Any]) -> None:
    s.started_at = ev.occurred_at
    s.started_data = d
    s.agent = d.get("agent") or s.agent or (ev.actor[6:] if ev.actor.startswith("agent:")
                                            else None)
    s.model = d.get("model", s.model)
    s.provider = d.get("provider", s.provider)
    s.parent_session = d.get("parent_session") or s.parent_session
    s.definition_hash = d.get("definition_hash")
    tools = d.get("allowed_tools")
    s.allowed_tools = tools if isinstance(tools, list) else None
    rules, denied = d.get("tools"), d.get("disallowed_tools")
    s.tool_rules = rules if isinstance(rules, list) else None
    s.disallowed_tools = denied if isinstance(denied, list) else None
    mode, source = d.get("permission_mode"), d.get("definition_source")
    s.permission_mode = mode if isinstance(mode, str) else None
    s.definition_source = source if isinstance(source, str) else None
    if s.status == "pending":
        s.status = "running"


def _agent_finished(st: RunState, s: Session, ev: RecordedEvent, d: dict[str, Any]) -> None:
    s.finished_at = ev.occurred_at
    s.status = str(d.get("status") or ("failed" if ev.type == "agent.failed" else "completed"))
    usage = d.get("usage")
    if isinstance(usage, dict):
        s.usage = {}
        _add_usage(s.usage, usage)
        s.recorded_usage = True
    cost = _num(d.get("cost_usd"))
    if cost is None:  # some responses unpriced: the priced part is a lower bound, but a
        cost = _num(d.get("cost_usd_priced")) or None  # session with none priced is unknown
    s.cost_usd = cost
    s.final_text = d.get("final_text", s.final_text)
    s.error = d.get("error")
    s.error_kind = d.get("error_kind")
    s.budget = d.get("budget")
    if s.started_at is None and s.agent is None and ev.actor.startswith("agent:"):
        s.agent = ev.actor[6:]


def _agent_resumed(st: RunState, s: Session, ev: RecordedEvent, d: dict[str, Any]) -> None:
    """``agents.resume`` took the session over after a crash: it runs again."""
    s.resumes.append({"position": ev.position, "at": format_ts(ev.occurred_at),
                      "from_version": d.get("from_version"),
                      "previous_status": d.get("previous_status"),
                      "provider": d.get("provider"),
                      "tool_calls_pending": d.get("tool_calls_pending") or []})
    s.status, s.finished_at = "running", None


def _turn_of(s: Session, d: dict[str, Any], create: bool) -> Turn:
    n = d.get("turn")
    if isinstance(n, int) and not isinstance(n, bool):
        t = s.turns.get(n)
        if t is None:
            t = s.turns[n] = Turn(n)
        return t
    last = s.last_turn()
    if last is not None and (not create or last.status == "pending"):
        return last
    n = (max(s.turns) + 1) if s.turns else 1
    t = s.turns[n] = Turn(n)
    return t


def _model_called(st: RunState, s: Session, ev: RecordedEvent, d: dict[str, Any]) -> None:
    t = _turn_of(s, d, create=True)
    if t.called_at is None:
        t.called_at = ev.occurred_at
        t.position = ev.position
    t.model = d.get("model", t.model)
    t.fingerprint = d.get("fingerprint", t.fingerprint)
    t.status = "pending"
    t.attempts.append({"attempt": d.get("attempt", len(t.attempts) + 1),
                       "called_at": format_ts(ev.occurred_at), "position": ev.position,
                       "error": None})
    if s.model is None:
        s.model = t.model


def _model_failed(st: RunState, s: Session, ev: RecordedEvent, d: dict[str, Any]) -> None:
    t = _turn_of(s, d, create=False)
    if not t.attempts:
        t.attempts.append({"attempt": d.get("attempt", 1), "called_at": None,
                           "position": ev.position, "error": None})
    a = t.attempts[-1]
    a.update({"error": d.get("error") or "failed", "status": d.get("status"),
              "transient": d.get("transient"), "will_retry": d.get("will_retry"),
              "delay_s": d.get("delay_s"), "failed_at": format_ts(ev.occurred_at)})
    if not d.get("will_retry"):
        t.status = "failed"


def _model_responded(st: RunState, s: Session, ev: RecordedEvent, d: dict[str, Any]) -> None:
    t = _turn_of(s, d, create=False)
    t.responded_at = ev.occurred_at
    if t.called_at is None:
        t.called_at, t.position = ev.occurred_at, ev.position
    t.status = "responded"
    t.model = d.get("model") or t.model
    latency = _num(d.get("latency_ms"))
    t.latency_ms = latency if latency is not None else _ms(t.called_at, ev.occurred_at)
    t.usage = {}
    _add_usage(t.usage, d.get("usage"))
    _add_usage(s.turn_usage, t.usage)
    t.stop_reason = d.get("stop_reason")
    cost = _num(d.get("cost_usd"))
    t.cost_usd = cost
    if cost is not None:
        s.turn_cost += cost
    content = d.get("content")
    if isinstance(content, list):
        t.text = "\n".join(b["text"] for b in content
                           if isinstance(b, dict) and b.get("type") == "text"
                           and isinstance(b.get("text"), str))
    elif isinstance(content, str):
        t.text = content


def _call(s: Session, d: dict[str, Any], ev: RecordedEvent) -> ToolCall:
    use_id = d.get("tool_use_id")
    if not isinstance(use_id, str) or not use_id:
        use_id = f"{ev.stream}@{ev.version}"
    tc = s.tool_calls.get(use_id)
    if tc is None:
        turn = d.get("turn")
        if not isinstance(turn, int) or isinstance(turn, bool):
            last = s.last_turn()
            turn = last.number if last is not None else None
        tc = s.tool_calls[use_id] = ToolCall(use_id, str(d.get("tool") or "?"), s.id, turn,
                                             position=ev.position)
    return tc


def _tool_requested(st: RunState, s: Session, ev: RecordedEvent, d: dict[str, Any]) -> None:
    tc = _call(s, d, ev)
    tc.requested_at = ev.occurred_at
    tc.position = ev.position
    tc.input = d.get("input")
    if d.get("tool"):
        tc.tool = str(d["tool"])


def _tool_denied(st: RunState, s: Session, ev: RecordedEvent, d: dict[str, Any]) -> None:
    tc = _call(s, d, ev)
    tc.decision = "denied"
    tc.rule = d.get("rule")
    tc.reason = d.get("reason")
    tc.is_error = True
    tc.completed_at = ev.occurred_at


def _tool_completed(st: RunState, s: Session, ev: RecordedEvent, d: dict[str, Any]) -> None:
    tc = _call(s, d, ev)
    if tc.decision != "denied":
        tc.decision = "allowed"
    out = d.get("output")
    tc.output = out if isinstance(out, str) or out is None else str(out)
    tc.output_sha256 = d.get("output_sha256")
    tc.output_chars = d.get("output_chars", len(tc.output) if tc.output else None)
    tc.truncated = bool(d.get("truncated"))
    tc.is_error = bool(d.get("is_error"))
    tc.error_kind = d.get("error_kind")
    tc.exit_code = d.get("exit_code")
    tc.timed_out = bool(d.get("timed_out"))
    dur = _num(d.get("duration_ms"))
    tc.duration_ms = dur if dur is not None else _ms(tc.requested_at, ev.occurred_at)
    files = d.get("files")
    tc.files = files if isinstance(files, list) else []
    tc.completed_at = ev.occurred_at


def _approval(st: RunState, s: Session, ev: RecordedEvent, d: dict[str, Any]) -> None:
    tc = _call(s, d, ev)
    a = tc.approval or {}
    if ev.type == "approval.requested":
        a.update({"requested_at": format_ts(ev.occurred_at), "rule": d.get("rule"),
                  "question": d.get("reason")})
    else:
        a.update({"resolved_at": format_ts(ev.occurred_at), "approved": d.get("approved"),
                  "by": d.get("source") or d.get("by") or ev.actor,
                  "reason": d.get("reason")})
    tc.approval = a


def _session_diff(st: RunState, s: Session, ev: RecordedEvent, d: dict[str, Any]) -> None:
    s.diffs.append(_diff(ev, d))


def _diff(ev: RecordedEvent, d: dict[str, Any]) -> dict[str, Any]:
    """What a ``workspace.diff`` says: the patch (``patch`` or ``diff``) and the files."""
    patch = d.get("patch", d.get("diff"))
    files = d.get("files")
    return {"position": ev.position, "occurred_at": format_ts(ev.occurred_at),
            "patch": patch if isinstance(patch, str) else None,
            "patch_sha256": d.get("patch_sha256") or d.get("sha256"),
            "patch_chars": d.get("patch_chars", len(patch) if isinstance(patch, str) else None),
            "truncated": bool(d.get("truncated")),
            "files": files if isinstance(files, list) else [],
            "base": d.get("base") or d.get("base_commit"), "commit": d.get("commit"),
            "error": d.get("error")}


def diff_dict(diff: dict[str, Any], max_chars: int | None) -> dict[str, Any]:
    """A recorded diff for output, its patch cut to ``max_chars`` (marked when cut)."""
    patch = diff["patch"]
    if patch is not None and max_chars is not None and len(patch) > max_chars:
        return {**diff, "patch": patch[:max_chars], "patch_shown_truncated": True}
    return {**diff, "patch_shown_truncated": False}


def _other(ev: RecordedEvent) -> dict[str, Any]:
    return {"position": ev.position, "type": ev.type, "stream": ev.stream,
            "occurred_at": format_ts(ev.occurred_at), "actor": ev.actor, "data": ev.data}


#: Types of the vocabulary (docs/events.md) that the fold keeps as ``other`` rather than
#: interpreting: shown by replay and audit, but not "unknown". The Claude Code bridge keeps
#: every hook call and every transcript record without its own mapping under the two
#: families below, so a session recorded live or imported is not flagged incomplete.
KNOWN_UNINTERPRETED = frozenset({
    "prompt.submitted", "task.updated", "task.cancelled", "run.stopping",
    "worker.claim_lost", "retention.applied"})
KNOWN_FAMILIES = ("claude.hook.", "claude.transcript.")


def is_known_type(type_: str) -> bool:
    """Whether an event type belongs to the vocabulary this version knows."""
    return (type_ in _HANDLERS or type_ in KNOWN_UNINTERPRETED
            or type_.startswith(KNOWN_FAMILIES))


_HANDLERS: dict[str, tuple[str, Any]] = {
    "run.started": ("run", RunState._run_started),
    "run.resumed": ("run", RunState._run_resumed),
    "run.finished": ("run", RunState._run_finished),
    "run.failed": ("run", RunState._run_finished),
    "task.created": ("run", RunState._task_event),
    "task.claimed": ("run", RunState._task_event),
    "task.released": ("run", RunState._task_event),
    "task.completed": ("run", RunState._task_event),
    "task.failed": ("run", RunState._task_event),
    "task.dispatched": ("run", RunState._task_event),
    "lead.started": ("run", RunState._lead_started),
    "review.requested": ("run", RunState._review),
    "review.completed": ("run", RunState._review),
    "agent.started": ("session", _agent_started),
    "agent.finished": ("session", _agent_finished),
    "agent.failed": ("session", _agent_finished),
    "agent.resumed": ("session", _agent_resumed),
    "model.called": ("session", _model_called),
    "model.failed": ("session", _model_failed),
    "model.responded": ("session", _model_responded),
    "tool.requested": ("session", _tool_requested),
    "tool.denied": ("session", _tool_denied),
    "tool.completed": ("session", _tool_completed),
    "approval.requested": ("session", _approval),
    "approval.resolved": ("session", _approval),
    "workspace.diff": ("session", _session_diff),
}
#: a ``workspace.diff`` outside a session stream (the orchestrator's run stream)
_RUN_HANDLERS: dict[str, Any] = {"workspace.diff": RunState._workspace_diff}


def fold(events: Any, run_id: str) -> RunState:
    """Fold an iterable of RecordedEvents (position order) into a fresh RunState."""
    state = RunState(run_id)
    for ev in events:
        state.apply(ev)
    return state
