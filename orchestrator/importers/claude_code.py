"""``orchestrail import claude-code``: Claude Code transcripts into the trail.

Finds the sessions under the given paths (a transcript, a session directory, a project
directory, the whole ``~/.claude/projects`` tree), in all three layouts Claude Code has
written: subagent records inline in the session file (``isSidechain``, up to about
v2.0.27), flat ``agent-<id>.jsonl`` files beside it (v2.0.28 to v2.1.1) and
``<session>/subagents/agent-<id>.jsonl`` with an ``agent-<id>.meta.json`` (v2.1.2 on).
``claude_records`` maps each session onto events; this module reads the files, reports
bad lines, skips what the store already holds, and appends the rest in large batches.

Idempotent: event ids are derived from the records, so a second import appends nothing
and a transcript that grew gets only its new part. Before a session is appended, the ids
already stored in its streams are read (only for streams that exist), and those events
are left out.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.hook.mapping import SOURCE as HOOK_SOURCE
from orchestrator.hook.transcript import NOT_A_RECORD, parse_lines
from orchestrator.importers.claude_records import (
    Ev,
    Mapped,
    Record,
    SessionMapper,
    Thread,
    record_time,
    split_inline_sidechains,
)

if TYPE_CHECKING:
    from eventstore.base import EventStore

#: Event types the live hook records with ids of its own (per invocation), so an import
#: cannot recognise them by id: in a stream the hook wrote, the hook's copy is kept and the
#: import's left out. (Tool calls and subagent starts share ids with the hook anyway.)
HOOK_LIFECYCLE = frozenset({"run.started", "run.finished", "agent.started", "agent.finished",
                            "prompt.submitted"})
#: Events per store round trip: appends to distinct streams go to the store together
#: (SQLite commits them in one transaction), so a tree of small sessions is not one
#: fsync per session.
WAVE_EVENTS = 4_000
_JSON_DUMP = json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=str).encode


def _loads() -> Callable[[bytes], Any]:
    try:
        import orjson
    except ImportError:  # the fast extra is optional
        return json.loads
    return orjson.loads


def _dump() -> Callable[[Any], str]:
    try:
        import orjson
    except ImportError:
        return _JSON_DUMP
    opts = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS

    def dump(value: Any) -> str:
        try:
            return orjson.dumps(value, option=opts).decode()
        except TypeError:
            return _JSON_DUMP(value)

    return dump


@dataclass(frozen=True)
class BadLine:
    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class SessionFiles:
    """The files of one session: its transcript (if given) and its subagents' files."""

    session_id: str
    main: Path | None = None
    agents: list[Path] = field(default_factory=list)

    def files(self) -> list[Path]:
        return ([self.main] if self.main else []) + self.agents


@dataclass
class Summary:
    files: int = 0
    bytes: int = 0
    sessions: int = 0
    records: int = 0
    events: int = 0
    appended: int = 0
    duplicates: int = 0
    not_stored: int = 0
    duplicate_records: int = 0
    bad_lines: list[BadLine] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)
    generic: dict[str, int] = field(default_factory=dict)
    #: sessions not imported because an orchestrail run already recorded them
    recorded_by_runs: list[dict[str, Any]] = field(default_factory=list)
    #: lifecycle events left out because the live hook recorded them in that stream
    hook_recorded: int = 0

    def add(self, m: Mapped) -> None:
        self.records += m.records
        self.not_stored += m.not_stored
        self.duplicate_records += m.duplicate_records
        for k, v in m.generic.items():
            self.generic[k] = self.generic.get(k, 0) + v

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "bytes": self.bytes, "sessions": self.sessions,
                "records": self.records, "events": self.events, "appended": self.appended,
                "duplicates_skipped": self.duplicates, "hook_recorded": self.hook_recorded,
                "not_stored": self.not_stored,
                "duplicate_records": self.duplicate_records,
                "bad_line_count": len(self.bad_lines),
                "bad_lines": [{"file": b.path, "line": b.line, "reason": b.reason}
                              for b in self.bad_lines],
                "ignored_files": self.ignored_files, "kept_generically": self.generic,
                "recorded_by_runs": self.recorded_by_runs}


class ImportInputError(Exception):
    """A path that cannot be imported at all (nothing was written)."""


# -- reading -----------------------------------------------------------------------------
def read_records(path: Path, loads: Callable[[bytes], Any], bad: list[BadLine]
                 ) -> tuple[list[Record], int]:
    """The records of one transcript, in file order; each bad line goes to ``bad``."""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        bad.append(BadLine(str(path), 0, f"cannot read: {exc.strerror or exc}"))
        return [], 0
    if b"\x00" in blob[:8192]:
        bad.append(BadLine(str(path), 1, "binary file (NUL bytes), not a transcript"))
        return [], len(blob)
    out: list[Record] = []
    prev = None
    for n, rec, problem in parse_lines(blob, loads):
        if rec is None:
            bad.append(BadLine(str(path), n, problem or NOT_A_RECORD))
            continue
        prev = record_time(rec, prev)
        out.append(Record(rec, n, prev))
    return out, len(blob)


def _first_session_id(path: Path, loads: Callable[[bytes], Any]) -> str | None:
    """The ``sessionId`` of a flat ``agent-*.jsonl`` (its parent session's id)."""
    try:
        with path.open("rb") as fh:
            for _, line in zip(range(20), fh, strict=False):
                try:
                    rec = loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict) and isinstance(rec.get("sessionId"), str):
                    return str(rec["sessionId"])
    except OSError:
        return None
    return None


def _meta(path: Path) -> dict[str, Any]:
    meta = path.with_name(path.name[: -len(".jsonl")] + ".meta.json")
    try:
        value = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


# -- finding sessions ----------------------------------------------------------------------
def _is_agent_file(p: Path) -> bool:
    return p.name.startswith("agent-") and p.suffix == ".jsonl"


def _session_of_nested(p: Path) -> str | None:
    """``<session>/subagents/agent-x.jsonl`` or ``<session>/subagents/workflows/<wf>/...``
    -> ``<session>``; anything else (a folder named ``subagents`` elsewhere) -> None."""
    up = p.parents
    if len(up) > 1 and up[0].name == "subagents":
        return up[1].name
    if len(up) > 3 and up[1].name == "workflows" and up[2].name == "subagents":
        return up[3].name
    return None


def discover(paths: Iterable[Path], bad: list[BadLine] | None = None,
             loads: Callable[[bytes], Any] | None = None
             ) -> tuple[list[SessionFiles], list[str]]:
    """Sessions under ``paths``, and the files that are not transcripts; a second file
    for one session goes to ``bad``. Raises ``ImportInputError`` for a missing path."""
    loads = loads or _loads()
    bad = bad if bad is not None else []
    sessions: dict[str, SessionFiles] = {}
    ignored: list[str] = []
    seen: set[Path] = set()

    def session(sid: str) -> SessionFiles:
        s = sessions.get(sid)
        if s is None:
            s = sessions[sid] = SessionFiles(sid)
        return s

    def add(p: Path, *, explicit: bool) -> None:
        rp = p.resolve()
        if rp in seen:
            return
        seen.add(rp)
        nested = _session_of_nested(p)
        if _is_agent_file(p):
            sid = nested or _first_session_id(p, loads) or p.parent.name
            session(sid).agents.append(p)
        elif nested is not None and not explicit:
            ignored.append(str(p))  # e.g. workflows' journal.jsonl: not a transcript
        else:
            s = session(p.stem)
            if s.main is not None:  # the same session id twice (a copied project folder)
                bad.append(BadLine(str(p), 1, f"another transcript of session {p.stem} "
                                              f"({s.main}) is imported; this one is skipped"))
                return
            s.main = p
            if explicit:  # a transcript given alone brings its subagents along
                for sub in sorted((p.parent / p.stem).glob("subagents/**/agent-*.jsonl")):
                    add(sub, explicit=False)
                for flat in sorted(p.parent.glob("agent-*.jsonl")):
                    if _first_session_id(flat, loads) == p.stem:
                        add(flat, explicit=False)

    for given in paths:
        if not given.exists():
            raise ImportInputError(f"{given}: no such file or directory")
        if given.is_file():
            add(given, explicit=True)
            continue
        if not given.is_dir():
            raise ImportInputError(f"{given}: not a file or directory")
        found: list[Path] = []
        transcript = given.parent / f"{given.name}.jsonl"
        if transcript.is_file():  # a session directory: its transcript sits beside it
            found.append(transcript)
        for root, dirs, files in os.walk(given):
            dirs.sort()
            found.extend(Path(root) / f for f in sorted(files) if f.endswith(".jsonl"))
        for p in found:
            add(p, explicit=False)
    return [sessions[k] for k in sorted(sessions)], ignored


# -- writing -------------------------------------------------------------------------------
class _Appender:
    """Sends batches to ``store.append_many`` in waves of about ``WAVE_EVENTS`` events.

    A wave goes out without waiting for the previous one when their streams are disjoint
    (mapping the next sessions then overlaps the store's writing); a wave that touches a
    stream still in flight waits for it, so each stream's batches land in order on every
    backend."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.wave: list[tuple[str, list[Any]]] = []
        self.streams: set[str] = set()
        self.size = 0
        self.appended = 0
        self.inflight: list[tuple[asyncio.Future[Any], set[str], int]] = []

    async def add(self, stream: str, events: list[Any]) -> None:
        self.wave.append((stream, events))
        self.streams.add(stream)
        self.size += len(events)
        if self.size >= WAVE_EVENTS:
            await self.flush()

    async def flush(self) -> None:
        if not self.wave:
            return
        wave, streams, size = self.wave, self.streams, self.size
        self.wave, self.streams, self.size = [], set(), 0
        while self.inflight and (len(self.inflight) > 1
                                 or self.inflight[0][1] & streams):
            await self._settle()
        task = asyncio.ensure_future(self.store.append_many(wave))
        self.inflight.append((task, streams, size))

    async def _settle(self) -> None:
        task, _, size = self.inflight.pop(0)
        await task
        self.appended += size

    async def close(self) -> None:
        await self.flush()
        while self.inflight:
            await self._settle()


@dataclass
class _Stored:
    """What the store already holds in a session's streams."""

    ids: set[str] = field(default_factory=set)
    #: other runs (correlation ids) found there: an orchestrail run recorded the session
    runs: set[str] = field(default_factory=set)
    #: streams the live hook wrote to
    hooked: set[str] = field(default_factory=set)


async def _stored(store: EventStore, streams: Iterable[str], existing: set[str],
                  session_id: str) -> _Stored:
    """Only streams in ``existing`` are read (a fresh store reads nothing back)."""
    out = _Stored()
    for stream in streams:
        if stream in existing:
            async for ev in store.read_stream(stream):
                out.ids.add(ev.id)
                if ev.correlation_id and ev.correlation_id != session_id:
                    out.runs.add(ev.correlation_id)
                if ev.metadata.get("source") == HOOK_SOURCE:
                    out.hooked.add(stream)
    return out


def _threads(sf: SessionFiles, loads: Callable[[bytes], Any], summary: Summary
             ) -> tuple[Thread | None, list[Thread]]:
    main: Thread | None = None
    subs: list[Thread] = []
    if sf.main is not None:
        records, size = read_records(sf.main, loads, summary.bad_lines)
        summary.bytes += size
        summary.files += 1
        own, inline = split_inline_sidechains(records, str(sf.main))
        main = Thread(own, str(sf.main))
        subs.extend(inline)
    for p in sf.agents:
        records, size = read_records(p, loads, summary.bad_lines)
        summary.bytes += size
        summary.files += 1
        meta = _meta(p)
        agent_id = next((str(r.rec["agentId"]) for r in records
                         if isinstance(r.rec.get("agentId"), str) and r.rec["agentId"]),
                        p.stem.removeprefix("agent-"))
        subs.append(Thread(records, str(p), agent_id=agent_id,
                           agent_type=meta.get("agentType") if isinstance(
                               meta.get("agentType"), str) else None,
                           spawned_by=meta.get("toolUseId") if isinstance(
                               meta.get("toolUseId"), str) else None,
                           description=meta.get("description") if isinstance(
                               meta.get("description"), str) else None))
    return main, subs


async def import_sessions(store: EventStore, sessions: list[SessionFiles], *,
                          progress: Callable[[int, int], None] | None = None,
                          bad_lines: list[BadLine] | None = None) -> Summary:
    """Map and append every session; bad lines are collected, never raised
    (``bad_lines``: those ``discover`` found, reported first)."""
    from eventstore.model import NewEvent

    loads = _loads()
    dump = _dump()
    from agents.providers.claude_code import DENIAL_TEXT

    summary = Summary(bad_lines=list(bad_lines or []))
    appender = _Appender(store)
    construct = NewEvent.model_construct
    # one look at which streams exist: a fresh store (or new sessions) reads nothing back
    existing = {info.stream for info in await store.streams()}
    for sf in sessions:
        main, subs = _threads(sf, loads, summary)
        mapped = SessionMapper(sf.session_id, str(sf.main) if sf.main else None, dump,
                               DENIAL_TEXT).map(main, subs)
        events: list[Ev] = mapped.events
        stored = await _stored(store, {e.stream for e in events}, existing, sf.session_id)
        if stored.runs:
            # run by orchestrail itself (the claude-code runner uses claude's session id):
            # that trail is already the record; importing would write a second one into it
            summary.recorded_by_runs.append({"session": sf.session_id,
                                             "runs": sorted(stored.runs)})
            continue
        summary.add(mapped)
        summary.sessions += bool(mapped.records)
        summary.events += len(events)
        batch_stream: str | None = None
        batch: list[Any] = []
        taken: set[str] = set()
        for e in events:
            if e.id in stored.ids or e.id in taken:
                summary.duplicates += 1
                continue
            if e.stream in stored.hooked and e.type in HOOK_LIFECYCLE:
                summary.hook_recorded += 1  # the hook's own copy is the record
                continue
            taken.add(e.id)
            if e.stream != batch_stream and batch:
                assert batch_stream is not None
                await appender.add(batch_stream, batch)
                batch = []
            batch_stream = e.stream
            batch.append(construct(
                type=e.type, data=e.data, actor=e.actor, correlation_id=sf.session_id,
                causation_id=e.causation_id, id=e.id, occurred_at=e.occurred_at,
                metadata=e.metadata))
        if batch and batch_stream is not None:
            await appender.add(batch_stream, batch)
        if progress is not None:
            progress(summary.files, summary.bytes)
    await appender.close()
    summary.appended = appender.appended
    return summary


class Progress:
    """``files n/N, x/y MB`` on stderr, redrawn at most five times a second (TTY only)."""

    def __init__(self, total_files: int, total_bytes: int) -> None:
        self.total_files = total_files
        self.total_bytes = total_bytes
        self.last = 0.0
        self.shown = False
        self.t0 = time.monotonic()

    def __call__(self, files: int, size: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.2 and files < self.total_files:
            return
        self.last = now
        width = 30
        frac = size / self.total_bytes if self.total_bytes else 1.0
        bar = "#" * int(frac * width)
        sys.stderr.write(f"\rimporting [{bar:<{width}}] {files}/{self.total_files} files, "
                         f"{size / 1e6:.1f}/{self.total_bytes / 1e6:.1f} MB, "
                         f"{now - self.t0:.0f}s ")
        sys.stderr.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
