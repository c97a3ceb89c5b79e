"""Retention: which whole streams may go, and the record that says they went.

Rules (DESIGN.md section 2): the default keeps everything; only whole streams are removed,
never part of a hash chain; a stream of an unfinished run is never removed; ``$`` streams
and ``keep`` prefixes are never removed; every removal is recorded in ``$retention`` with
each stream's last hash, count and positions, so ``verify`` can account for the gap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from eventstore.model import RecordedEvent, StreamInfo

RETENTION_STREAM = "$retention"
RETENTION_TYPE = "retention.applied"

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``: the forms config files and the CLI accept."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"invalid duration {text!r}: use a number and s, m, h, d or w (e.g. 90d)")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


class RetentionPolicy(BaseModel):
    """``max_age`` drops streams whose last event is older; ``max_streams`` keeps the newest N.

    Both None (the default) means infinite retention: nothing is ever removed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_age: timedelta | None = None
    max_streams: int | None = Field(default=None, ge=0)
    keep: tuple[str, ...] = ()

    @field_validator("max_age", mode="before")
    @classmethod
    def _dur(cls, v: Any) -> Any:
        if isinstance(v, str):
            return parse_duration(v)
        return v

    @property
    def infinite(self) -> bool:
        return self.max_age is None and self.max_streams is None

    def describe(self) -> dict[str, Any]:
        return {
            "max_age_seconds": None if self.max_age is None else int(self.max_age.total_seconds()),
            "max_streams": self.max_streams,
            "keep": list(self.keep),
        }


class RemovedStream(BaseModel):
    model_config = ConfigDict(frozen=True)

    stream: str
    count: int
    last_version: int
    last_hash: str
    positions: list[tuple[int, int]]


class RetentionReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    dry_run: bool
    policy: dict[str, Any]
    removed: list[RemovedStream]
    protected_unfinished: list[str]
    events_removed: int
    record: RecordedEvent | None = None


def select_expired(
    streams: Iterable[StreamInfo],
    policy: RetentionPolicy,
    protected: set[str],
    now: datetime | None = None,
) -> list[StreamInfo]:
    """The streams the policy removes, oldest first."""
    now = now or datetime.now(UTC)
    eligible = [
        s for s in streams
        if not s.stream.startswith("$")
        and s.stream not in protected
        and not any(s.stream.startswith(k) for k in policy.keep)
    ]
    eligible.sort(key=lambda s: s.last_position)
    doomed: dict[str, StreamInfo] = {}
    if policy.max_age is not None:
        cutoff = now - policy.max_age
        for s in eligible:
            if s.last_recorded_at < cutoff:
                doomed[s.stream] = s
    if policy.max_streams is not None and len(eligible) > policy.max_streams:
        for s in eligible[: len(eligible) - policy.max_streams]:
            doomed[s.stream] = s
    return sorted(doomed.values(), key=lambda s: s.last_position)


def position_ranges(positions: Iterable[int]) -> list[tuple[int, int]]:
    """Compress sorted positions to inclusive ranges: [1,2,3,7] -> [(1,3),(7,7)]."""
    out: list[tuple[int, int]] = []
    for p in positions:
        if out and out[-1][1] == p - 1:
            out[-1] = (out[-1][0], p)
        else:
            out.append((p, p))
    return out
