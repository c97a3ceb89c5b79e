"""The one append algorithm every backend runs inside its own transaction.

A backend supplies what only it can read atomically (the stream's head, and which of the
batch's ids already exist) and writes the rows this module returns. Keeping idempotency,
optimistic concurrency and hashing here means the five backends cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring as _encode_str
from typing import Any, NamedTuple, cast

from eventstore.canonical import (
    actor_problem,
    canonical_json,
    chain_hash_json,
    format_ts,
    type_problem,
)
from eventstore.errors import DuplicateEventId, InvalidEvent, WrongExpectedVersion
from eventstore.model import (
    ANY,
    EXISTS,
    NO_STREAM,
    AppendResult,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    append_result,
    recorded_event,
)


class Head(NamedTuple):
    """The last event of a stream: its version and hash."""

    version: int
    hash: str


class Existing(NamedTuple):
    """Where an already-stored event id lives."""

    stream: str
    version: int
    position: int


@dataclass(slots=True)
class Row:
    """A fully computed event, ready to be written; only the position is still open."""

    id: str
    stream: str
    version: int
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    data_json: str
    metadata_json: str
    actor: str
    correlation_id: str | None
    causation_id: str | None
    occurred_at: datetime
    occurred_at_text: str
    recorded_at: datetime
    recorded_at_text: str
    prev_hash: str | None
    hash: str

    def recorded(self, position: int) -> RecordedEvent:
        return recorded_event(
            self.id, self.stream, self.version, position, self.type, self.data,
            self.metadata, self.actor, self.correlation_id, self.causation_id,
            self.occurred_at, self.recorded_at, self.prev_hash, self.hash,
        )


class EncodedBatch(list[NewEvent]):
    """A batch of events with the canonical JSON of each one's ``data`` and ``metadata``.

    ``EventStore.append`` encodes every payload once, to look for secrets, and hands the
    text on in this list so ``build_rows`` stores and hashes it without encoding again.
    Any other sequence of events works too; ``build_rows`` then encodes them itself.
    """

    __slots__ = ("texts",)

    def __init__(self, events: Sequence[NewEvent], texts: Sequence[tuple[str, str]]) -> None:
        super().__init__(events)
        #: ``(data_json, metadata_json)`` per event, in order.
        self.texts = list(texts)


def check_expected_version(stream: str, expected: ExpectedVersion, head: Head | None) -> None:
    current = None if head is None else head.version
    if expected is ANY:
        return
    if expected is NO_STREAM:
        ok = current is None
    elif expected is EXISTS:
        ok = current is not None
    else:
        ok = current == expected
    if not ok:
        raise WrongExpectedVersion(stream, expected, current)


def idempotent_result(
    stream: str,
    events: Sequence[NewEvent],
    expected: ExpectedVersion,
    existing: dict[str, Existing],
) -> AppendResult | None:
    """Return the original result when this append is a retry of a stored one.

    EventStoreDB semantics: the same ids, in the same order, at the same consecutive
    versions of the same stream (and consistent with ``expected``) is a retry; any other
    overlap is ``DuplicateEventId``. No overlap returns None: a fresh append.
    """
    if not existing:
        return None
    found = [existing.get(e.id) for e in events]
    first = found[0]
    retry = (
        first is not None
        and all(
            f is not None and f.stream == stream and f.version == first.version + i
            for i, f in enumerate(found)
        )
    )
    if retry and first is not None:
        stale = (expected is NO_STREAM and first.version != 0) or (
            isinstance(expected, int) and expected != first.version - 1
        )
        retry = not stale
    if not retry or first is None:
        for e, f in zip(events, found, strict=True):
            if f is not None:
                raise DuplicateEventId(e.id, f.stream, f.version)
    assert first is not None
    last = found[-1]
    assert last is not None
    return AppendResult(
        stream=stream,
        first_version=first.version,
        last_version=last.version,
        first_position=first.position,
        last_position=last.position,
    )


def build_rows(
    stream: str, events: Sequence[NewEvent], head: Head | None, recorded_at: datetime
) -> list[Row]:
    """Assign versions and chain hashes to a batch that passed the checks."""
    return [  # positional: this runs once per event (same order as the fields)
        Row(v[1], stream, v[3], v[4], e.data, e.metadata, v[10], v[11], v[5], v[6], v[7],
            e.occurred_at, v[8], recorded_at, v[9], v[12], v[13])
        for e, v in zip(events, build_values(stream, events, head, recorded_at, 0),
                        strict=True)
    ]


#: The order of ``build_values``'s tuples: SQLite's ``INSERT_SQL`` columns, position first.
VALUE_FIELDS = ("position", "id", "stream", "version", "type", "actor", "correlation_id",
                "causation_id", "occurred_at", "recorded_at", "data", "metadata", "prev_hash",
                "hash")


def build_values(
    stream: str, events: Sequence[NewEvent], head: Head | None, recorded_at: datetime,
    first_position: int, recorded_at_text: str | None = None,
) -> list[tuple[Any, ...]]:
    """Versions, canonical texts and chain hashes of a batch, as plain tuples (``VALUE_FIELDS``).

    The one place the chain is built: ``build_rows`` wraps these in ``Row`` objects for
    the backends that want them; SQLite inserts the tuples as they are (skipping the
    ``Row`` and the second tuple made from it: about 13 % of row building, 0.05 ms per
    100 events). ``recorded_at_text`` is ``format_ts(recorded_at)`` when the caller has
    it (a group commit formats it once for all its appends).

    The hash comes from ``chain_hash_json`` given JSON texts made once per batch where
    they repeat (eight string encodings per event were a fifth of this loop): the stream
    and the actors, types and correlation ids; the timestamp and the previous hash, which
    this code made, are quoted without escaping. ``test_build_values_hashes_are_chain_hash``
    holds it to ``chain_hash`` over ``canonical_json`` of the whole document.
    """
    out: list[tuple[Any, ...]] = []
    add = out.append
    version = -1 if head is None else head.version
    prev = None if head is None else head.hash
    rec_text = format_ts(recorded_at) if recorded_at_text is None else recorded_at_text
    texts = events.texts if isinstance(events, EncodedBatch) else None
    position = first_position
    quote = _encode_str
    memo: dict[str | None, str] = {None: "null"}  # JSON of repeated names
    stream_json = quote(stream)
    prev_json = "null" if prev is None else quote(prev)  # as stored: escape it
    hash_json = chain_hash_json
    for i, e in enumerate(events):
        version += 1
        if texts is not None:
            data_json, meta_json = texts[i]
        else:
            data_json = canonical_json(e.data)
            meta_json = canonical_json(e.metadata)
        occ_text = format_ts(e.occurred_at)
        eid = e.id
        actor = e.actor
        type_ = e.type
        correlation = e.correlation_id
        causation = e.causation_id
        actor_json = memo.get(actor)
        if actor_json is None:
            actor_json = memo[actor] = quote(actor)
        type_json = memo.get(type_)
        if type_json is None:
            type_json = memo[type_] = quote(type_)
        corr_json = memo.get(correlation)
        if corr_json is None:
            corr_json = memo[correlation] = quote(cast(str, correlation))  # None: in memo
        caus_json = memo.get(causation)
        if caus_json is None:
            caus_json = memo[causation] = quote(cast(str, causation))
        h = hash_json(actor_json, caus_json, corr_json, data_json, quote(eid), meta_json,
                      f'"{occ_text}"', prev_json, stream_json, type_json, version)
        add((position, eid, stream, version, type_, actor, correlation, causation, occ_text,
             rec_text, data_json, meta_json, prev, h))
        position += 1
        prev = h
        prev_json = f'"{h}"'  # hex digits: nothing to escape
    return out


def plan_append_values(
    stream: str,
    events: Sequence[NewEvent],
    expected: ExpectedVersion,
    head: Head | None,
    existing: dict[str, Existing],
    recorded_at: datetime,
    first_position: int,
    recorded_at_text: str | None = None,
) -> AppendResult | list[tuple[Any, ...]]:
    """``plan_append`` returning ``build_values`` tuples (positions from ``first_position``)."""
    done = decide(stream, events, expected, head, existing)
    if done is not None:
        return done
    return build_values(stream, events, head, recorded_at, first_position, recorded_at_text)


def plan_append(
    stream: str,
    events: Sequence[NewEvent],
    expected: ExpectedVersion,
    head: Head | None,
    existing: dict[str, Existing],
    recorded_at: datetime,
) -> AppendResult | list[Row]:
    """Decide an append: the original result for a retry, or the rows to write.

    Raises ``WrongExpectedVersion`` or ``DuplicateEventId`` before anything is written.
    """
    done = decide(stream, events, expected, head, existing)
    if done is not None:
        return done
    return build_rows(stream, events, head, recorded_at)


def decide(
    stream: str, events: Sequence[NewEvent], expected: ExpectedVersion, head: Head | None,
    existing: dict[str, Existing],
) -> AppendResult | None:
    """The original result for a retry, None for a fresh append; raises when it may not go."""
    done = idempotent_result(stream, events, expected, existing)
    if done is None:
        check_expected_version(stream, expected, head)
    return done


#: Types and actors already found valid: a few dozen distinct values make up nearly every
#: event, and a set lookup costs a tenth of the two regex checks. Bounded, in case a
#: caller mints names without end.
_GOOD_TYPES: set[str] = set()
_GOOD_ACTORS: set[str] = set()
_GOOD_MAX = 4096


def _remember(good: set[str], name: str) -> None:
    if len(good) >= _GOOD_MAX:
        good.clear()
    good.add(name)


def check_batch(events: Sequence[NewEvent]) -> None:
    if not events:
        raise InvalidEvent("append needs at least one event")
    seen: set[str] = set()
    for i, e in enumerate(events):
        if not isinstance(e, NewEvent):
            raise InvalidEvent(f"events[{i}] is a {type(e).__name__}, not a NewEvent")
        # again here: a NewEvent built with model_construct skipped its validators
        if not (type(e.type) is str and e.type in _GOOD_TYPES
                and type(e.actor) is str and e.actor in _GOOD_ACTORS):
            problem = type_problem(e.type) or actor_problem(e.actor)
            if problem:
                raise InvalidEvent(f"events[{i}]: {problem}")
            _remember(_GOOD_TYPES, e.type)
            _remember(_GOOD_ACTORS, e.actor)
        if e.id in seen:
            raise InvalidEvent(f"events[{i}]: id {e.id} appears twice in one append")
        seen.add(e.id)


def result_of(stream: str, rows: Sequence[Row], first_position: int) -> AppendResult:
    return append_result(stream, rows[0].version, rows[-1].version, first_position,
                         first_position + len(rows) - 1)
