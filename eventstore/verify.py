"""Chain verification: recompute every hash and account for every gap.

What it proves: within each stream, versions are gapless from 0, every ``prev_hash``
links to the event before it, and every hash matches its content (so an edited, removed
or reordered event shows up). Across the log, positions only rise, and on backends with
gapless positions every missing position is accounted for by a ``retention.applied``
record. What it cannot prove on its own: that nobody cut events off the very end of the
log; compare ``head`` with a value kept elsewhere (``verify --expect-head``) for that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from eventstore.canonical import chain_hash
from eventstore.model import Query, RecordedEvent
from eventstore.retention import RETENTION_STREAM, RETENTION_TYPE

if TYPE_CHECKING:
    from eventstore.base import EventStore


class Problem(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: str  # hash-mismatch | broken-link | version-gap | position-order | position-gap | ...
    message: str
    position: int | None = None
    stream: str | None = None
    version: int | None = None
    event_id: str | None = None


class VerifyReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    ok: bool
    events: int
    streams: int
    removed_streams_accounted: int
    head_position: int
    head_hash: str | None
    problems: list[Problem]

    @property
    def first_problem(self) -> Problem | None:
        return self.problems[0] if self.problems else None


def _removed_positions(records: list[RecordedEvent]) -> tuple[list[tuple[int, int]], set[str]]:
    ranges: list[tuple[int, int]] = []
    names: set[str] = set()
    for rec in records:
        if rec.type != RETENTION_TYPE:
            continue
        for item in rec.data.get("removed", []):
            names.add(str(item.get("stream")))
            for a, b in item.get("positions", []):
                ranges.append((int(a), int(b)))
    ranges.sort()
    return ranges, names


def _covered(lo: int, hi: int, ranges: list[tuple[int, int]]) -> bool:
    """Is every position in [lo, hi] inside one of the (sorted) ranges?"""
    need = lo
    for a, b in ranges:
        if b < need:
            continue
        if a > need:
            return False
        need = b + 1
        if need > hi:
            return True
    return need > hi


def _chain_problems(ev: RecordedEvent, heads: dict[str, tuple[int, str]],
                    where: str) -> list[tuple[str, str]]:
    """One event against its stream's chain so far (``heads``: stream -> version, hash)."""
    out: list[tuple[str, str]] = []
    head = heads.get(ev.stream)
    want_version = 0 if head is None else head[0] + 1
    want_prev = None if head is None else head[1]
    if ev.version != want_version:
        out.append(("version-gap", f"{where}: expected version {want_version}"))
    elif ev.prev_hash != want_prev:
        out.append(("broken-link", f"{where}: prev_hash does not match the hash of version "
                    f"{want_version - 1}"))
    if chain_hash(ev.hash_fields(), ev.prev_hash) != ev.hash:
        out.append(("hash-mismatch", f"{where}: content does not match its hash (edited?)"))
    heads[ev.stream] = (ev.version, ev.hash)
    return out


async def verify_streams(store: EventStore, streams: list[str], *,
                         max_problems: int = 100) -> VerifyReport:
    """Check the chains of some streams only (one run's, for ``audit``).

    Each stream must be gapless from version 0 with every link and hash intact; a stream
    with no events counts as accounted for when a retention record names it, else it is a
    ``missing-stream`` problem. Positions across the log and the store's head are
    ``verify_store``'s job (a run's streams interleave with everyone else's).
    """
    retention = [e async for e in store.read_stream(RETENTION_STREAM)]
    _, removed_names = _removed_positions(retention)
    heads: dict[str, tuple[int, str]] = {}
    problems: list[Problem] = []
    count = accounted = last_pos = 0
    head_hash: str | None = None
    for stream in streams:
        seen = False
        async for ev in store.read_stream(stream):
            seen = True
            count += 1
            where = f"event {ev.id} ({ev.stream!r} v{ev.version}, position {ev.position})"
            for kind, msg in _chain_problems(ev, heads, where):
                if len(problems) < max_problems:
                    problems.append(Problem(kind=kind, message=msg, position=ev.position,
                                            stream=ev.stream, version=ev.version,
                                            event_id=ev.id))
            if ev.position > last_pos:
                last_pos, head_hash = ev.position, ev.hash
        if not seen:
            if stream in removed_names:
                accounted += 1
            elif len(problems) < max_problems:
                problems.append(Problem(kind="missing-stream", stream=stream, message=(
                    f"stream {stream!r} has no events and no retention record accounts "
                    "for it")))
    return VerifyReport(ok=not problems, events=count, streams=len(heads),
                        removed_streams_accounted=accounted, head_position=last_pos,
                        head_hash=head_hash, problems=problems)


async def verify_store(store: EventStore, *, max_problems: int = 100) -> VerifyReport:
    retention = [e async for e in store.read_stream(RETENTION_STREAM)]
    removed_ranges, removed_names = _removed_positions(retention)
    heads: dict[str, tuple[int, str]] = {}
    problems: list[Problem] = []
    last_pos = 0
    count = 0

    def bad(kind: str, msg: str, ev: RecordedEvent | None = None) -> None:
        if len(problems) < max_problems:
            extra: dict[str, Any] = {}
            if ev is not None:
                extra = dict(position=ev.position, stream=ev.stream, version=ev.version,
                             event_id=ev.id)
            problems.append(Problem(kind=kind, message=msg, **extra))

    async for ev in store.read(Query()):
        count += 1
        where = f"event {ev.id} ({ev.stream!r} v{ev.version}, position {ev.position})"
        if ev.position <= last_pos:
            bad("position-order", f"{where}: position does not rise after {last_pos}", ev)
        elif (store.gapless_positions and ev.position > last_pos + 1
              and not _covered(last_pos + 1, ev.position - 1, removed_ranges)):
                bad("position-gap",
                    f"positions {last_pos + 1}..{ev.position - 1} are missing before {where} "
                    "and no retention record accounts for them", ev)
        last_pos = max(last_pos, ev.position)
        for kind, msg in _chain_problems(ev, heads, where):
            bad(kind, msg, ev)

    head_position = await store.head_position()
    if head_position > last_pos and not _covered(last_pos + 1, head_position, removed_ranges):
        bad("truncated", f"the store's head is position {head_position} but the last event "
            f"found is at {last_pos}: events were removed from the end")
    head_hash = None
    if last_pos:
        async for ev in store.read(Query(), after=last_pos - 1):
            head_hash = ev.hash
    return VerifyReport(
        ok=not problems,
        events=count,
        streams=len(heads),
        removed_streams_accounted=len(removed_names),
        head_position=last_pos,
        head_hash=head_hash,
        problems=problems,
    )
