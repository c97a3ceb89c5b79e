"""Which runs a store holds, and which one the user means (``resolve_run``).

Listing must stay cheap on a store of millions of events, so it never folds a run: it
reads only the lifecycle events (``run.*``, ``task.dispatched``, ``agent.*``) through the
store's type filter and takes event counts from ``store.streams()``. Runs without a
``run.started`` (a Claude Code session, a standalone ``agents run``) are found through the
correlation id of their sessions' ``agent.started``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from eventstore.canonical import format_ts
from eventstore.errors import StoreError
from orchestrator.fold import _add_usage, _num, total_tokens

if TYPE_CHECKING:
    from eventstore.base import EventStore

LIFECYCLE = ("run.started", "run.resumed", "run.finished", "run.failed", "task.dispatched",
             "agent.started", "agent.finished", "agent.failed")
LAST = ("last", "--last", "@last")


class RunNotFound(StoreError):
    """No run matches what the user typed; the message lists the closest ids."""


@dataclass
class RunSummary:
    id: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    last_at: datetime | None = None
    status: str | None = None
    agents: set[str] = field(default_factory=set)
    tasks: set[str] = field(default_factory=set)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    recorded: dict[str, Any] | None = None
    has_run_stream: bool = False
    events: int = 0
    removed_streams: list[str] = field(default_factory=list)

    def usage(self) -> dict[str, int]:
        if self.recorded and isinstance(self.recorded.get("usage"), dict):
            out: dict[str, int] = {}
            _add_usage(out, self.recorded["usage"])
            return out
        out = {}
        for s in self.sessions.values():
            _add_usage(out, s.get("usage"))
        return out

    def cost(self) -> float | None:
        if self.recorded and _num(self.recorded.get("cost_usd")) is not None:
            return _num(self.recorded["cost_usd"])
        costs = [c for s in self.sessions.values() if (c := _num(s.get("cost_usd"))) is not None]
        return round(sum(costs), 8) if costs else None

    def derived_status(self) -> str:
        if self.status:
            return self.status
        roots = [s for s in self.sessions.values() if not s.get("parent")]
        states = {str(s.get("status") or "running") for s in roots}
        if not states or "running" in states:
            return "running"
        if "failed" in states:
            return "failed"
        return states.pop() if len(states) == 1 else "completed"

    def to_dict(self) -> dict[str, Any]:
        started = self.started_at
        end = self.finished_at or (self.last_at if self.derived_status() != "running" else None)
        usage = self.usage()
        return {
            "id": self.id, "started_at": format_ts(started) if started else None,
            "finished_at": format_ts(self.finished_at) if self.finished_at else None,
            "status": self.derived_status(), "agents": sorted(self.agents),
            "tasks": len(self.tasks), "sessions": len(self.sessions), "events": self.events,
            "duration_ms": round((end - started).total_seconds() * 1000, 3)
            if started and end else None,
            "usage": usage, "tokens": total_tokens(usage), "cost_usd": self.cost(),
            "incomplete": bool(self.removed_streams),
        }


async def list_runs(store: EventStore) -> list[RunSummary]:
    """Every run in the store, newest first (by start time, then by id)."""
    from eventstore.model import Query
    from eventstore.retention import RETENTION_STREAM

    runs: dict[str, RunSummary] = {}
    async for ev in store.read(Query(types=LIFECYCLE)):
        rid = ev.correlation_id
        if not rid:
            continue
        r = runs.get(rid)
        if r is None:
            r = runs[rid] = RunSummary(rid)
        d = ev.data if isinstance(ev.data, dict) else {}
        if r.started_at is None or ev.occurred_at < r.started_at:
            r.started_at = ev.occurred_at
        if r.last_at is None or ev.occurred_at > r.last_at:
            r.last_at = ev.occurred_at
        t = ev.type
        if t == "run.started":
            r.has_run_stream = True
            r.started_at = ev.occurred_at
            agents = d.get("agents")
            if isinstance(agents, dict):
                r.agents |= {str(a) for a in agents}
            for tid in d.get("tasks") or []:
                if isinstance(tid, str):
                    r.tasks.add(tid)
        elif t == "run.resumed":  # running again until its next run.finished
            r.finished_at, r.status, r.recorded = None, None, None
        elif t in ("run.finished", "run.failed"):
            r.finished_at = ev.occurred_at
            r.status = str(d.get("status") or ("failed" if t == "run.failed" else "completed"))
            r.recorded = d
        elif t == "task.dispatched":
            if isinstance(d.get("task_id"), str):
                r.tasks.add(d["task_id"])
            if isinstance(d.get("session_id"), str):
                r.sessions.setdefault(d["session_id"], {})
        elif ev.stream.startswith("session-"):
            s = r.sessions.setdefault(ev.stream[8:], {})
            if t == "agent.started":
                if d.get("agent"):
                    r.agents.add(str(d["agent"]))
                s["parent"] = d.get("parent_session")
                s.setdefault("status", "running")
            else:
                s["status"] = d.get("status") or ("failed" if t == "agent.failed"
                                                  else "completed")
                s["usage"] = d.get("usage")
                s["cost_usd"] = d.get("cost_usd")
    counts = {info.stream: info.count for info in await store.streams()}
    removed: set[str] = set()
    async for ev in store.read_stream(RETENTION_STREAM):
        for item in ev.data.get("removed") or []:
            if isinstance(item, dict) and isinstance(item.get("stream"), str):
                removed.add(item["stream"])
    for r in runs.values():
        streams = [f"run-{r.id}", *(f"session-{s}" for s in r.sessions),
                   *(f"task-{t}" for t in r.tasks)]
        r.events = sum(counts.get(s, 0) for s in streams)
        r.removed_streams = [s for s in streams if s in removed and s not in counts]
    return sorted(runs.values(), key=lambda r: (r.started_at is not None, r.started_at, r.id),
                  reverse=True)


async def resolve_run(store: EventStore, text: str | None, *, last: bool = False,
                      runs: list[RunSummary] | None = None) -> str:
    """A full run id, a unique prefix of one, or ``last``/``--last`` (the newest run)."""
    if runs is None:
        runs = await list_runs(store)
    want_last = last or (text or "").strip().lower() in LAST
    if want_last:
        if not runs:
            raise RunNotFound("no runs in this store yet")
        return runs[0].id
    if not text:
        raise RunNotFound("give a run id (or --last); `orchestrail runs` lists them")
    ids = [r.id for r in runs]
    if text in ids:
        return text
    matches = [i for i in ids if i.startswith(text)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise RunNotFound(f"run id prefix {text!r} is ambiguous: matches "
                          f"{', '.join(matches[:8])}{' …' if len(matches) > 8 else ''}")
    gone = await _removed_run(store, text)
    if gone:
        raise RunNotFound(f"run {text!r}: all of its events were removed by retention "
                          f"({gone})")
    close = difflib.get_close_matches(text, ids, n=5, cutoff=0.4)
    hint = f"; closest: {', '.join(close)}" if close else (
        f"; newest: {', '.join(ids[:5])}" if ids else "; the store has no runs")
    raise RunNotFound(f"no run {text!r} in this store{hint}")


async def _removed_run(store: EventStore, run_id: str) -> str | None:
    from eventstore.retention import RETENTION_STREAM

    async for ev in store.read_stream(RETENTION_STREAM):
        for item in ev.data.get("removed") or []:
            if isinstance(item, dict) and item.get("stream") in (f"run-{run_id}",
                                                                 f"session-{run_id}"):
                return f"{format_ts(ev.occurred_at)}, position {ev.position}"
    return None
