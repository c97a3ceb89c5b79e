"""The event model: what callers append, what the store hands back, and how they query.

Pydantic models at the API boundary (validated once, frozen); backends build
``RecordedEvent`` with ``model_construct`` from rows they wrote themselves, so reads do
not pay for validation twice.
"""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from eventstore.canonical import (
    actor_problem,
    canonical_json,
    format_ts,
    hash_body,
    stream_name_problem,
    type_problem,
    uuid7,
)


class StreamState(enum.Enum):
    """Non-numeric expected versions, as in EventStoreDB."""

    ANY = "any"
    NO_STREAM = "no_stream"
    EXISTS = "exists"

    def __str__(self) -> str:
        return self.value


ANY: Final = StreamState.ANY
NO_STREAM: Final = StreamState.NO_STREAM
EXISTS: Final = StreamState.EXISTS

ExpectedVersion = StreamState | int


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return str(uuid7())


class NewEvent(BaseModel):
    """An event as a caller appends it. ``id`` is the idempotency key (UUIDv7 by default)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    data: dict[str, Any] = Field(default_factory=dict)
    actor: str = "orchestrator"
    correlation_id: str | None = None
    causation_id: str | None = None
    id: str = Field(default_factory=_new_id)
    occurred_at: datetime = Field(default_factory=_now)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _check_type(cls, v: str) -> str:
        problem = type_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("actor")
    @classmethod
    def _check_actor(cls, v: str) -> str:
        problem = actor_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("id", mode="before")
    @classmethod
    def _check_id(cls, v: Any) -> str:
        text = str(v)
        if not text or len(text) > 100 or any(c.isspace() for c in text):
            raise ValueError(f"event id {text!r} must be 1-100 characters without spaces")
        return text

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("occurred_at must be timezone-aware (UTC)")
        return v.astimezone(UTC)

    @model_validator(mode="after")
    def _json_only(self) -> NewEvent:
        for field in ("data", "metadata"):
            try:
                canonical_json(getattr(self, field))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{field} is not a JSON object: {exc}") from None
        return self


class RecordedEvent(BaseModel):
    """An event as stored: the caller's fields plus what the store assigned."""

    model_config = ConfigDict(frozen=True)

    id: str
    stream: str
    version: int
    position: int
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    actor: str
    correlation_id: str | None
    causation_id: str | None
    occurred_at: datetime
    recorded_at: datetime
    prev_hash: str | None
    hash: str

    def hash_fields(self) -> dict[str, Any]:
        return hash_body(
            id=self.id,
            stream=self.stream,
            version=self.version,
            type=self.type,
            data=self.data,
            metadata=self.metadata,
            actor=self.actor,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            occurred_at=format_ts(self.occurred_at),
        )

    def to_json_dict(self) -> dict[str, Any]:
        """The stable JSON form used by the CLI, JSONL files and ``store copy``."""
        return {
            "id": self.id,
            "stream": self.stream,
            "version": self.version,
            "position": self.position,
            "type": self.type,
            "data": self.data,
            "metadata": self.metadata,
            "actor": self.actor,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "occurred_at": format_ts(self.occurred_at),
            "recorded_at": format_ts(self.recorded_at),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_json_dict(), ensure_ascii=False)


_RECORDED_FIELDS = tuple(RecordedEvent.model_fields)
_ALL_FIELDS_SET = set(_RECORDED_FIELDS)  # copied per event: cheaper than set(tuple)
_new_recorded = RecordedEvent.__new__
_set = object.__setattr__
# BaseModel's slots, set through their descriptors (a C call each; object.__setattr__
# looks the name up first). A read of 100,000 events builds 100,000 of these.
_slots: Any = vars(BaseModel)
_set_fields_set = _slots["__pydantic_fields_set__"].__set__
_set_extra = _slots["__pydantic_extra__"].__set__
_set_private = _slots["__pydantic_private__"].__set__


def recorded_event(
    id: str, stream: str, version: int, position: int, type: str, data: dict[str, Any],
    metadata: dict[str, Any], actor: str, correlation_id: str | None,
    causation_id: str | None, occurred_at: datetime, recorded_at: datetime,
    prev_hash: str | None, hash: str,
) -> RecordedEvent:
    """``RecordedEvent.model_construct`` with every field given, at a quarter of its cost.

    Backends build one per event written and per row read; ``model_construct`` loops over
    the fields looking for aliases and defaults, which these always-complete values never
    need. This sets exactly what it sets (a unit test compares the two), in field order.
    """
    m = _new_recorded(RecordedEvent)
    _set(m, "__dict__", {
        "id": id, "stream": stream, "version": version, "position": position, "type": type,
        "data": data, "metadata": metadata, "actor": actor, "correlation_id": correlation_id,
        "causation_id": causation_id, "occurred_at": occurred_at, "recorded_at": recorded_at,
        "prev_hash": prev_hash, "hash": hash,
    })
    _set_fields_set(m, _ALL_FIELDS_SET.copy())
    _set_extra(m, None)
    _set_private(m, None)
    return m


class AppendResult(BaseModel):
    """Where an append landed. An idempotent retry returns the original result."""

    model_config = ConfigDict(frozen=True)

    stream: str
    first_version: int
    last_version: int
    first_position: int
    last_position: int


_APPEND_FIELDS_SET = set(AppendResult.model_fields)
_new_result = AppendResult.__new__


def append_result(stream: str, first_version: int, last_version: int, first_position: int,
                  last_position: int) -> AppendResult:
    """``AppendResult`` of values the store computed, without pydantic's validation.

    A group commit of 8 single-event appends builds 8 of these on the writer thread;
    validating each cost about as much as planning its event. Same object as the
    validated constructor (``test_append_result_fast_constructor_equals_validated``).
    """
    m = _new_result(AppendResult)
    _set(m, "__dict__", {"stream": stream, "first_version": first_version,
                         "last_version": last_version, "first_position": first_position,
                         "last_position": last_position})
    _set_fields_set(m, _APPEND_FIELDS_SET.copy())
    _set_extra(m, None)
    _set_private(m, None)
    return m


def match_type(pattern: str, value: str) -> bool:
    """``tool.*`` matches ``tool.requested`` (not ``tool``); ``*`` matches all; else exact."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return value.startswith(pattern[:-1])
    return value == pattern


class Query(BaseModel):
    """Filters over the global log. All given filters must match (AND); lists are OR."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stream: str | None = None
    stream_prefix: str | None = None
    types: tuple[str, ...] | None = None
    actors: tuple[str, ...] | None = None
    correlation_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @field_validator("types")
    @classmethod
    def _check_types(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is None:
            return v
        for t in v:
            bare = t[:-2] if t.endswith(".*") else t
            if t != "*" and type_problem(bare):
                raise ValueError(f"invalid type filter {t!r}: use 'tool.completed' or 'tool.*'")
        return v

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            return v.replace(tzinfo=UTC)
        return v.astimezone(UTC) if v is not None else None

    def matches(self, ev: RecordedEvent) -> bool:
        """The reference semantics every backend's native filtering must agree with."""
        if self.stream is not None and ev.stream != self.stream:
            return False
        if self.stream_prefix is not None and not ev.stream.startswith(self.stream_prefix):
            return False
        if self.types is not None and not any(match_type(p, ev.type) for p in self.types):
            return False
        if self.actors is not None and ev.actor not in self.actors:
            return False
        if self.correlation_id is not None and ev.correlation_id != self.correlation_id:
            return False
        if self.since is not None and ev.occurred_at < self.since:
            return False
        return not (self.until is not None and ev.occurred_at >= self.until)


class Page(BaseModel):
    """One page of a query. ``next_cursor`` is the position to pass as ``after``; None at end."""

    model_config = ConfigDict(frozen=True)

    events: list[RecordedEvent]
    next_cursor: int | None


class StreamInfo(BaseModel):
    """Summary of one stream, as retention and verify need it."""

    model_config = ConfigDict(frozen=True)

    stream: str
    count: int
    last_version: int
    last_hash: str
    first_position: int
    last_position: int
    first_recorded_at: datetime
    last_recorded_at: datetime


#: Stream names already found valid (none reserved, so valid with or without
#: ``allow_reserved``): every append checks its stream, and a few hundred names make up
#: most of them; a set lookup costs a tenth of the regex. Bounded, as in ``check_batch``.
_GOOD_STREAMS: set[str] = set()


def check_stream(stream: str, *, allow_reserved: bool = False) -> None:
    if type(stream) is str and stream in _GOOD_STREAMS:
        return
    from eventstore.errors import InvalidEvent

    problem = stream_name_problem(stream, allow_reserved=allow_reserved)
    if problem:
        raise InvalidEvent(problem)
    if type(stream) is str and not stream.startswith("$"):
        if len(_GOOD_STREAMS) >= 4096:
            _GOOD_STREAMS.clear()
        _GOOD_STREAMS.add(stream)


def check_expected(expected: ExpectedVersion) -> None:
    if isinstance(expected, StreamState):
        return
    from eventstore.errors import InvalidEvent

    if isinstance(expected, bool) or not isinstance(expected, int) or expected < 0:
        raise InvalidEvent(
            f"expected_version must be ANY, NO_STREAM, EXISTS or a version >= 0, got {expected!r}"
        )
