"""Claude Code transcript records -> our events, for one session and its subagents.

Pure: files are read elsewhere (``read_records``), the store is written elsewhere
(``claude_code``). The mapping mirrors the hook's (``orchestrator.hook.mapping``) so that a
session imported from its transcript and the same session recorded live by the hook land
in the same streams with the same vocabulary: ``run-<session_id>``, ``session-<session_id>``
for the main thread, ``session-<agent_id>`` per subagent, ``correlation_id = session_id``.

Event ids are derived (uuid5), never random, so importing twice adds nothing:

* the ids the hook derives from natural keys are reused as they are: ``tool.requested`` is
  ``requested_id(stream, tool_use_id)``, a call's outcome ``outcome_id(stream,
  tool_use_id)``, a subagent's ``agent.started`` ``derived_id("agent.started", stream)``.
  A session recorded live and then imported into the same store therefore gets no second
  copy of its tool calls;
* every other event's id comes from the record's ``uuid`` (or, for the few record types
  without one, its line number), plus an index when a record yields several events.

Usage is counted once per API message id: Claude Code writes one record per content block
of a message, each repeating the message's usage.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator.hook.mapping import (
    ACTOR,
    AGENT_TOOLS,
    actor_for,
    cap_output,
    derived_id,
    outcome_id,
    requested_id,
    safe_stream,
    safe_type_segment,
)
from orchestrator.hook.transcript import text_of

SOURCE = "claude-code-transcript"
#: Record types that carry no agent action and are not stored: ``progress`` mirrors the
#: subagent's messages into the parent file (read for linking only) and streams tool output.
NOT_STORED = frozenset({"progress"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Tools whose input names the file they change (``files`` of ``tool.completed``).
FILE_TOOLS = frozenset({"Write", "Edit", "MultiEdit", "NotebookEdit"})
#: What the main thread does; the session is at rest when the last of these is a finish.
_ACTIONS = frozenset({"prompt.submitted", "model.responded", "model.failed", "tool.requested",
                      "tool.completed", "tool.denied", "agent.finished"})


@dataclass(slots=True)
class Record:
    """One parsed transcript line."""

    rec: dict[str, Any]
    line: int
    at: datetime


@dataclass
class Thread:
    """The records of one stream: the main thread, or one subagent."""

    records: list[Record]
    path: str
    agent_id: str | None = None  # None: the main thread
    agent_type: str | None = None
    spawned_by: str | None = None  # tool_use_id of the Agent/Task call (meta.json)
    description: str | None = None


@dataclass
class Mapped:
    """What one session became: events in the order to append them, plus counts."""

    events: list[Any] = field(default_factory=list)
    records: int = 0
    not_stored: int = 0
    duplicate_records: int = 0
    generic: dict[str, int] = field(default_factory=dict)


class Ev:
    """An event before it is a ``NewEvent`` (built in bulk by the caller)."""

    __slots__ = ("actor", "causation_id", "data", "id", "metadata", "occurred_at", "stream",
                 "type")

    def __init__(self, stream: str, type_: str, data: dict[str, Any], id_: str, actor: str,
                 occurred_at: datetime, causation_id: str | None,
                 metadata: dict[str, Any]) -> None:
        self.stream = stream
        self.type = type_
        self.data = data
        self.id = id_
        self.actor = actor
        self.occurred_at = occurred_at
        self.causation_id = causation_id
        self.metadata = metadata


def parse_time(value: Any) -> datetime | None:
    """Claude Code's ISO timestamps (``2026-11-23T11:55:49.033Z``)."""
    if not isinstance(value, str) or len(value) < 19:
        return None
    try:
        at = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1] == "Z" else value)
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _blocks(rec: dict[str, Any]) -> list[dict[str, Any]]:
    msg = rec.get("message")
    content = msg.get("content") if isinstance(msg, dict) else None
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def _prompt_text(rec: dict[str, Any]) -> str | None:
    msg = rec.get("message")
    content = msg.get("content") if isinstance(msg, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list) and not any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in content):
        return text_of(content)
    return None


class SessionMapper:
    """Maps the threads of one Claude Code session onto events."""

    def __init__(self, session_id: str, main_path: str | None, dump: Callable[[Any], str],
                 denial: re.Pattern[str]) -> None:
        self.sid = session_id
        self.main_path = main_path
        self.dump = dump
        self.denial = denial
        self.run_stream = safe_stream(f"run-{session_id}")
        self.main_stream = safe_stream(f"session-{session_id}")
        #: tool_use_id -> (stream, tool, input, requested at, requested event id)
        self.calls: dict[str, tuple[str, Any, Any, datetime, str]] = {}
        self.counted_messages: set[str] = set()
        self.out = Mapped()

    # -- linking subagents to the call that spawned them --------------------------------
    def link(self, main: Thread | None, subs: list[Thread]) -> None:
        """Fill each subagent's ``spawned_by``/``agent_type`` from what the files say.

        In order of trust: the ``.meta.json`` ``toolUseId``; the parent's Agent/Task
        ``tool_result`` (``toolUseResult.agentId``) or ``agent_progress`` record; the
        delegation prompt equal to an unclaimed call's ``input.prompt`` (old inline
        sidechains say nothing else)."""
        spawns: dict[str, dict[str, Any]] = {}
        by_agent: dict[str, str] = {}
        for th in ([main] if main else []) + subs:
            for r in th.records:
                rec = r.rec
                kind = rec.get("type")
                if kind == "assistant":
                    for b in _blocks(rec):
                        if b.get("type") == "tool_use" and b.get("name") in AGENT_TOOLS \
                                and isinstance(b.get("id"), str):
                            inp = b.get("input")
                            spawns[b["id"]] = inp if isinstance(inp, dict) else {}
                elif kind == "user":
                    tur = rec.get("toolUseResult")
                    aid = _str(tur.get("agentId")) if isinstance(tur, dict) else None
                    if aid is None and th is main:  # some versions put it on the record
                        aid = _str(rec.get("agentId"))
                    if aid:
                        for b in _blocks(rec):
                            if b.get("type") == "tool_result" and _str(b.get("tool_use_id")):
                                by_agent.setdefault(aid, b["tool_use_id"])
                elif kind == "progress":
                    data = rec.get("data")
                    if isinstance(data, dict) and data.get("type") == "agent_progress":
                        aid = _str(data.get("agentId"))
                        tuid = _str(rec.get("parentToolUseID"))
                        if aid and tuid:
                            by_agent.setdefault(aid, tuid)
        claimed = {s.spawned_by for s in subs if s.spawned_by}
        for th in subs:
            if th.spawned_by is None and th.agent_id in by_agent:
                th.spawned_by = by_agent[th.agent_id]
                claimed.add(th.spawned_by)
        for th in subs:
            if th.spawned_by is not None:
                continue
            first = next((_prompt_text(r.rec) for r in th.records
                          if r.rec.get("type") == "user"), None)
            for tuid, want in spawns.items():
                if tuid not in claimed and first is not None and want.get("prompt") == first:
                    th.spawned_by = tuid
                    claimed.add(tuid)
                    break
        for th in subs:
            spec = spawns.get(th.spawned_by or "")
            if th.agent_type is None and spec is not None:
                th.agent_type = _str(spec.get("subagent_type"))
            if th.agent_type is None:
                th.agent_type = next((_str(r.rec.get("attributionAgent"))
                                      for r in th.records if r.rec.get("attributionAgent")),
                                     None)
            if th.description is None and spec is not None:
                th.description = _str(spec.get("description"))

    # -- the mapping -------------------------------------------------------------------
    def map(self, main: Thread | None, subs: list[Thread]) -> Mapped:
        self.link(main, subs)
        # tool_use blocks first, across threads: a subagent's agent.started names the
        # parent's call, which may sit in another thread
        for th in ([main] if main else []) + subs:
            stream = self.main_stream if th.agent_id is None \
                else safe_stream(f"session-{th.agent_id}")
            for r in th.records:
                if r.rec.get("type") != "assistant":
                    continue
                for b in _blocks(r.rec):
                    tuid = _str(b.get("id"))
                    if b.get("type") == "tool_use" and tuid and tuid not in self.calls:
                        self.calls[tuid] = (stream, b.get("name"), b.get("input"), r.at,
                                            requested_id(stream, tuid))
        per_stream: list[list[Ev]] = []
        if main is not None:
            evs = self._thread(main)
            last = next((e for e in reversed(evs) if e.type in _ACTIONS), None)
            if last is not None and last.type == "agent.finished":
                # the main thread is at rest (a finished turn): the session as of this import
                evs.append(Ev(self.run_stream, "run.finished", {
                    "source": "claude-code", "session_id": self.sid, "status": "completed",
                    "reason": "transcript", "imported": True},
                    derived_id("claude-import", self.run_stream, "run.finished", last.id),
                    ACTOR, last.occurred_at, None, {"source": SOURCE}))
            per_stream.append(evs)
        for th in subs:
            per_stream.append(self._thread(th))
        # one order across streams (by record time), each stream's own order kept
        merged = heapq.merge(*per_stream, key=lambda e: e.occurred_at)
        self.out.events = list(merged)
        return self.out

    def _thread(self, th: Thread) -> list[Ev]:
        return _ThreadMapper(self, th).run()


class _ThreadMapper:
    """One thread's records, in file order."""

    def __init__(self, sm: SessionMapper, th: Thread) -> None:
        self.sm = sm
        self.th = th
        self.sub = th.agent_id is not None
        self.stream = safe_stream(f"session-{th.agent_id}") if self.sub else sm.main_stream
        self.actor = actor_for(th.agent_type) if self.sub else ACTOR
        self.out: list[Ev] = []
        self.turn = 0
        self.pending: list[Record] = []  # assistant records of one message id
        self.seen: set[str] = set()
        self.started = False
        #: token counts of this thread so far, each API message once (for agent.finished)
        self.usage: dict[str, int] = {}

    def emit(self, type_: str, data: dict[str, Any], id_: str, at: datetime, *,
             stream: str | None = None, causation: str | None = None,
             meta: dict[str, Any] | None = None, actor: str | None = None) -> Ev:
        ev = Ev(stream or self.stream, type_, data, id_, actor or self.actor, at, causation,
                meta if meta is not None else {"source": SOURCE})
        self.out.append(ev)
        return ev

    def rid(self, r: Record, *parts: str) -> str:
        key = _str(r.rec.get("uuid")) or f"line-{r.line}"
        return derived_id("claude-import", self.stream, key, *parts)

    def meta(self, r: Record) -> dict[str, Any]:
        m: dict[str, Any] = {"source": SOURCE, "line": r.line}
        if isinstance(r.rec.get("uuid"), str):
            m["record_uuid"] = r.rec["uuid"]
        return m

    # -- start ----------------------------------------------------------------------------
    def start(self, r: Record) -> None:
        self.started = True
        rec = self.th.records
        sm = self.sm
        # the envelope (cwd, version, branch) from the first record that has one
        first = next((x.rec for x in rec if "cwd" in x.rec), r.rec)
        model = next((m.get("model") for x in rec if x.rec.get("type") == "assistant"
                      and isinstance(m := x.rec.get("message"), dict)
                      and _str(m.get("model")) and m.get("model") != "<synthetic>"), None)
        if not self.sub:
            run = self.emit("run.started", {
                "source": "claude-code", "session_id": sm.sid, "start_source": "transcript",
                "model": model, "cwd": first.get("cwd"), "version": first.get("version"),
                "git_branch": first.get("gitBranch"), "transcript_path": self.th.path,
                "imported": True}, derived_id("claude-import", sm.run_stream, "run.started"),
                r.at, stream=sm.run_stream, actor=ACTOR)
            self.emit("agent.started", {
                "agent": "claude-code", "provider": "claude-code", "model": model,
                "start_source": "transcript", "claude": {"session_id": sm.sid,
                                                         "version": first.get("version")}},
                derived_id("claude-import", self.stream, "agent.started"), r.at,
                causation=run.id)
            return
        th = self.th
        spawn = sm.calls.get(th.spawned_by or "")
        parent = spawn[0].removeprefix("session-") if spawn else sm.sid
        self.emit("agent.started", {
            "agent": th.agent_type, "provider": "claude-code", "model": model,
            "parent_session": parent,
            "claude": {"session_id": sm.sid, "agent_id": th.agent_id,
                       "version": first.get("version")},
            "spawned_by_tool_use_id": th.spawned_by, "description": th.description,
            "prompt": _prompt_text(r.rec) if r.rec.get("type") == "user" else None,
            "transcript_path": th.path},
            derived_id("agent.started", self.stream), r.at,
            causation=spawn[4] if spawn else (
                requested_id(sm.main_stream, th.spawned_by) if th.spawned_by else None))

    # -- records ----------------------------------------------------------------------------
    def run(self) -> list[Ev]:
        sm = self.sm
        for r in self.th.records:
            rec = r.rec
            sm.out.records += 1
            uid = rec.get("uuid")
            if isinstance(uid, str):
                if uid in self.seen:
                    sm.out.duplicate_records += 1
                    continue
                self.seen.add(uid)
            kind = rec.get("type")
            if not self.started and kind not in NOT_STORED:
                self.start(r)
            if kind == "assistant":
                mid = self._message_id(r)
                if self.pending and self._message_id(self.pending[0]) != mid:
                    self.flush()
                self.pending.append(r)
                continue
            if kind in NOT_STORED:
                sm.out.not_stored += 1
                continue
            if kind == "user":
                self.flush()
                self.user(r)
            elif kind == "system" and rec.get("subtype") == "compact_boundary":
                self.flush()
                cm = _dict(rec.get("compactMetadata"))
                self.emit("claude.transcript.compact_boundary", {
                    "trigger": cm.get("trigger"), "pre_tokens": cm.get("preTokens"),
                    "logical_parent_uuid": rec.get("logicalParentUuid"),
                    "content": rec.get("content")}, self.rid(r), r.at, meta=self.meta(r))
            else:
                self.flush()
                self.generic(r)
        self.flush()
        if not self.started and self.th.records and self.sub:
            self.start(self.th.records[0])
        return self.out

    def generic(self, r: Record) -> None:
        """A record type without its own mapping (and any future one): kept as sent."""
        rec = r.rec
        kind = safe_type_segment(str(rec.get("type")))
        sub = rec.get("subtype")
        type_ = f"claude.transcript.{kind}" + (
            f".{safe_type_segment(sub)}" if isinstance(sub, str) and sub else "")
        self.sm.out.generic[type_] = self.sm.out.generic.get(type_, 0) + 1
        data = {k: v for k, v in rec.items()
                if k not in ("parentUuid", "sessionId", "userType", "cwd", "version",
                             "gitBranch", "isSidechain", "agentId", "slug", "uuid")}
        self.emit(type_, data, self.rid(r), r.at, meta=self.meta(r))

    @staticmethod
    def _message_id(r: Record) -> str:
        msg = r.rec.get("message")
        mid = msg.get("id") if isinstance(msg, dict) else None
        return mid if isinstance(mid, str) and mid else f"uuid:{r.rec.get('uuid')}@{r.line}"

    def flush(self) -> None:
        """One ``model.responded`` per API message (its records merged), then its calls."""
        if not self.pending:
            return
        group, self.pending = self.pending, []
        first = group[0]
        msg0 = _dict(first.rec.get("message"))
        mid = self._message_id(first)
        blocks: list[dict[str, Any]] = []
        usage: dict[str, Any] = {}
        stop_reason = None
        for r in group:
            msg = r.rec.get("message")
            if not isinstance(msg, dict):
                continue
            blocks.extend(_blocks(r.rec))
            stop_reason = msg.get("stop_reason") or stop_reason
            for k, v in (msg.get("usage") or {}).items() if isinstance(
                    msg.get("usage"), dict) else ():
                if isinstance(v, int) and not isinstance(v, bool):
                    usage[k] = max(v, usage.get(k) or 0)
                elif v is not None and k not in usage:
                    usage[k] = v
        sm = self.sm
        counted_before = mid in sm.counted_messages
        sm.counted_messages.add(mid)
        calls = [b for b in blocks if b.get("type") == "tool_use" and _str(b.get("id"))]
        model = msg0.get("model")
        if first.rec.get("isApiErrorMessage"):
            self.emit("model.failed", {
                "turn": self.turn + 1, "error": text_of(blocks) or "API error",
                "will_retry": False, "source": "claude-code"},
                self.rid(first, "model"), first.at, meta=self.meta(first))
            return
        if model == "<synthetic>":  # written by Claude Code, not the model (interrupts)
            for r in group:
                self.generic(r)
            return
        self.turn += 1
        if not counted_before:
            for k, v in usage.items():
                if type(v) is int:
                    self.usage[k] = self.usage.get(k, 0) + v
        responded = self.emit("model.responded", {
            "turn": self.turn, "model": model, "response_id": msg0.get("id"),
            "request_id": first.rec.get("requestId"), "content": blocks,
            "stop_reason": stop_reason or ("tool_use" if calls else "end_turn"),
            "usage": {} if counted_before else usage, "usage_counted_earlier": counted_before,
            "source": "claude-code"}, self.rid(first, "model"), first.at,
            meta=self.meta(first))
        for b in calls:
            tuid = b["id"]
            stream, _tool, _inp, _at, req_id = sm.calls.get(
                tuid, (self.stream, None, None, first.at, requested_id(self.stream, tuid)))
            if stream != self.stream:  # the same tool_use_id twice: keep the first
                continue
            self.emit("tool.requested", {"turn": self.turn, "tool_use_id": tuid,
                                         "tool": b.get("name"), "input": b.get("input")},
                      req_id, first.at, causation=responded.id, meta=self.meta(first))
        if not calls and stop_reason in ("end_turn", "stop_sequence", None):
            # the end of a turn, as the hook's Stop / SubagentStop
            self.emit("agent.finished", {
                "agent": self.th.agent_type if self.sub else "claude-code",
                "status": "completed", "final_text": text_of(blocks), "turns": self.turn,
                "usage": dict(self.usage)},
                self.rid(first, "finished"), group[-1].at, meta=self.meta(first))

    def user(self, r: Record) -> None:
        rec = r.rec
        results = [b for b in _blocks(rec) if b.get("type") == "tool_result"]
        if not results:
            text = _prompt_text(rec)
            if self.sub and self._is_first_user(r):
                return  # the delegation prompt: already in agent.started
            if rec.get("isCompactSummary"):
                self.emit("claude.transcript.compact_summary", {"summary": text},
                          self.rid(r), r.at, meta=self.meta(r))
                return
            if rec.get("isMeta") or text is None:
                self.generic(r)
                return
            self.emit("prompt.submitted", {"prompt": text, "prompt_id": rec.get("promptId")},
                      self.rid(r), r.at, meta=self.meta(r))
            return
        extra = rec.get("toolUseResult")
        for b in results:
            self.outcome(r, b, extra if len(results) == 1 else None)

    def _is_first_user(self, r: Record) -> bool:
        return next((x for x in self.th.records if x.rec.get("type") == "user"), None) is r

    def outcome(self, r: Record, block: dict[str, Any], extra: Any) -> None:
        sm = self.sm
        tuid = _str(block.get("tool_use_id"))
        if tuid is None:
            self.generic(r)
            return
        stream, tool, tool_input, req_at, req_id = sm.calls.get(
            tuid, (self.stream, None, None, None, requested_id(self.stream, tuid)))
        text = text_of(block.get("content"))
        is_error = block.get("is_error") is True
        meta = self.meta(r)
        if is_error and sm.denial.search(text):
            self.emit("tool.denied", {
                "tool_use_id": tuid, "tool": tool, "input": tool_input, "rule": None,
                "reason": text or "refused by Claude Code", "decided_by": "claude-code",
                "reconciled": False}, outcome_id(stream, tuid), r.at, stream=stream,
                causation=req_id, meta=meta)
            return
        data: dict[str, Any] = {"tool_use_id": tuid, "tool": tool, "is_error": is_error,
                                **cap_output(text, sm.dump), "files": []}
        if req_at is not None:
            data["duration_ms"] = round((r.at - req_at).total_seconds() * 1000, 3)
        if is_error:
            data["error"] = text
        path = None
        if not is_error and tool in FILE_TOOLS and isinstance(tool_input, dict):
            # subagent files carry no toolUseResult for a successful call: the input says
            path = _str(tool_input.get("file_path")) or _str(tool_input.get("notebook_path"))
            if path:
                data["files"] = [{"path": path, "op": str(tool).lower()}]
        if isinstance(extra, dict):
            path = extra.get("filePath") or extra.get("file_path")
            if isinstance(path, str):
                data["files"] = [{"path": path, "op": extra.get("type")}]
            if _str(extra.get("agentId")):
                data["claude_agent_id"] = extra["agentId"]
                data["agent_status"] = extra.get("status")
            if "interrupted" in extra:
                data["interrupted"] = extra.get("interrupted")
        self.emit("tool.completed", data, outcome_id(stream, tuid), r.at, stream=stream,
                  causation=req_id, meta=meta)


def split_inline_sidechains(records: Iterable[Record], path: str
                            ) -> tuple[list[Record], list[Thread]]:
    """Old layout (up to about v2.0.27): subagent records inline, ``isSidechain: true``.

    A sidechain is a chain of ``parentUuid`` links back to its root (the delegation
    prompt). Chains whose records carry the same ``agentId`` are one subagent; the thread's
    agent id is that ``agentId``, else the root record's uuid."""
    main: list[Record] = []
    root_of: dict[str, str] = {}
    order: list[str] = []
    groups: dict[str, list[Record]] = {}
    agent_of: dict[str, str] = {}
    for r in records:
        rec = r.rec
        if rec.get("isSidechain") is not True:
            main.append(r)
            continue
        uid = _str(rec.get("uuid")) or f"line-{r.line}"
        parent = _str(rec.get("parentUuid"))
        root = root_of[parent] if parent and parent in root_of else uid
        root_of[uid] = root
        if root not in groups:
            groups[root] = []
            order.append(root)
        groups[root].append(r)
        aid = _str(rec.get("agentId"))
        if aid and root not in agent_of:
            agent_of[root] = aid
    threads: dict[str, Thread] = {}
    for root in order:
        key = agent_of.get(root, root)
        th = threads.get(key)
        if th is None:
            threads[key] = Thread(groups[root], path, agent_id=key)
        else:  # another chain of the same agent: keep file order
            th.records = sorted(th.records + groups[root], key=lambda x: x.line)
    return main, list(threads.values())


def record_time(rec: dict[str, Any], previous: datetime | None) -> datetime:
    """The record's timestamp, else the previous one's (records such as ``summary`` have
    none), else the epoch."""
    at = parse_time(rec.get("timestamp"))
    if at is None:
        snap = rec.get("snapshot")
        at = parse_time(snap.get("timestamp")) if isinstance(snap, dict) else None
    return at or previous or _EPOCH
