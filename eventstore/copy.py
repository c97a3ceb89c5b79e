"""``store copy``: move every event from one store to another, hashes intact.

Why this works without a special import path: a hash covers the event's content, its
stream, version and the previous hash, but not its position or recorded_at. Re-appending
each stream's events in order, with the same ids, to an empty target therefore reproduces
every version and every hash. Redaction is off on the target (the data was redacted when
first stored; redacting again with other patterns would change hashes).

Resumable: a small state file remembers the last source position whose batch committed.
A crash between the commit and the state write re-appends that batch, which the store
answers as an idempotent retry (same ids at the same place): no duplicates. At the end the
target is verified, and every stream's last version and hash must equal the source's.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from eventstore.errors import DuplicateEventId, StoreError, WrongExpectedVersion
from eventstore.model import NO_STREAM, ExpectedVersion, NewEvent, Query, RecordedEvent

if TYPE_CHECKING:
    from eventstore.base import EventStore


class CopyReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    copied: int
    resumed_from: int
    source_head: int
    streams: int
    verified: bool
    mismatches: list[str]


def state_file_for(src_url: str, dst_url: str, folder: Path) -> Path:
    digest = hashlib.sha256(f"{src_url}\n{dst_url}".encode()).hexdigest()[:16]
    return folder / f"copy-{digest}.json"


def _load_state(path: Path) -> int:
    try:
        return int(json.loads(path.read_text())["after"])
    except FileNotFoundError:
        return 0
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(
            f"{path}: unreadable copy state ({exc}); delete it to start over"
        ) from None


def _save_state(path: Path, after: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"after": after}))
    os.replace(tmp, path)


def as_new(ev: RecordedEvent) -> NewEvent:
    return NewEvent.model_construct(
        type=ev.type, data=ev.data, actor=ev.actor, correlation_id=ev.correlation_id,
        causation_id=ev.causation_id, id=ev.id, occurred_at=ev.occurred_at,
        metadata=ev.metadata,
    )


def group_by_stream(
    events: list[RecordedEvent],
) -> list[tuple[str, list[NewEvent], ExpectedVersion]]:
    batches: list[tuple[str, list[NewEvent], ExpectedVersion]] = []
    for ev in events:
        if batches and batches[-1][0] == ev.stream:
            batches[-1][1].append(as_new(ev))
        else:
            expected: ExpectedVersion = NO_STREAM if ev.version == 0 else ev.version - 1
            batches.append((ev.stream, [as_new(ev)], expected))
    return batches


async def copy_store(
    src: EventStore,
    dst: EventStore,
    *,
    state_path: Path,
    batch_size: int = 2_000,
    progress: Callable[[int, int], None] | None = None,
) -> CopyReport:
    """Copy ``src`` into ``dst`` (which must be empty or a partial copy of ``src``)."""
    dst.redactor.enabled = False
    state_path.parent.mkdir(parents=True, exist_ok=True)
    resumed_from = after = _load_state(state_path)
    head = await src.head_position()
    copied = 0
    while True:
        page = await src.read_page(Query(), after=after, limit=batch_size)
        if not page.events:
            break
        try:
            await dst._append_many(group_by_stream(page.events))
        except (WrongExpectedVersion, DuplicateEventId) as exc:
            raise StoreError(
                f"the target already holds other events ({exc}); store copy needs an empty "
                "target, or the same target again to resume"
            ) from None
        after = page.events[-1].position
        copied += len(page.events)
        _save_state(state_path, after)
        if progress:
            progress(after, head)
    mismatches: list[str] = []
    ours = {s.stream: s for s in await dst.streams()}
    theirs = await src.streams()
    for s in theirs:
        t = ours.get(s.stream)
        if t is None or (t.last_version, t.last_hash) != (s.last_version, s.last_hash):
            mismatches.append(s.stream)
    report = await dst.verify()
    ok = report.ok and not mismatches
    if ok:
        state_path.unlink(missing_ok=True)
    return CopyReport(copied=copied, resumed_from=resumed_from, source_head=head,
                      streams=len(theirs), verified=ok, mismatches=mismatches[:20])
