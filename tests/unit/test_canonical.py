"""The canonical encoding is the on-disk definition of an event: pin it down."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from eventstore.canonical import (
    canonical_json,
    chain_hash,
    chain_hash_parts,
    format_ts,
    hash_body,
    parse_ts,
    stream_name_problem,
    type_problem,
    uuid7,
)


@pytest.mark.parametrize("data", [
    {}, {"b": 1, "a": [1.5, "é", None, True]}, {"nested": {"z": {"y": 1e-7}}, "big": 10**30},
    {"unicode": "日本語 \u2028 \x00", "quote": "\"'\\"},
])
def test_hash_parts_equals_full_canonical_hash(data: dict[str, object]) -> None:
    body = hash_body(id="e1", stream="s-1", version=3, type="tool.completed", data=data,
                     metadata={"m": 1}, actor="agent:x", correlation_id="r", causation_id=None,
                     occurred_at="2026-11-23T10:00:00.000000Z")
    fast = chain_hash_parts(
        id="e1", stream="s-1", version=3, type="tool.completed", data_json=canonical_json(data),
        metadata_json=canonical_json({"m": 1}), actor="agent:x", correlation_id="r",
        causation_id=None, occurred_at="2026-11-23T10:00:00.000000Z", prev_hash="ab" * 32)
    assert fast == chain_hash(body, "ab" * 32)
    assert fast != chain_hash(body, None)


def test_canonical_json_sorts_and_refuses_nan() -> None:
    assert canonical_json({"b": 1, "a": {"d": 2, "c": 3}}) == '{"a":{"c":3,"d":2},"b":1}'
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_timestamps_round_trip_in_utc() -> None:
    ts = datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC)
    assert format_ts(ts) == "2026-11-23T10:00:00.123456Z"
    assert parse_ts(format_ts(ts)) == ts
    with pytest.raises(ValueError):
        format_ts(datetime(2026, 1, 1))


def test_uuid7_is_version_7_and_monotonic() -> None:
    ids = [uuid7() for _ in range(5000)]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in ids)
    assert ids == sorted(ids, key=lambda u: u.int)
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("name,ok", [
    ("run-0192", True), ("session-abc_1", True), ("task-T1", True), ("a" * 200, True),
    ("", False), (" run", False), ("run 1", False), ("a" * 201, False), ("$retention", False),
    ("ru\nn", False), ("-x", False),
])
def test_stream_names(name: str, ok: bool) -> None:
    assert (stream_name_problem(name) is None) is ok


def test_reserved_streams_allowed_for_the_store() -> None:
    assert stream_name_problem("$retention", allow_reserved=True) is None


@pytest.mark.parametrize("name,ok", [
    ("tool.completed", True), ("run.started", True), ("claude.hook.PreToolUse", True),
    ("x", True), ("tool..x", False), ("tool.", False), ("1tool", False), ("tool completed", False),
])
def test_type_names(name: str, ok: bool) -> None:
    assert (type_problem(name) is None) is ok


def test_hash_covers_every_field() -> None:
    base = hash_body(id="e", stream="s", version=0, type="a.b", data={"k": 1}, metadata={},
                     actor="orchestrator", correlation_id=None, causation_id=None,
                     occurred_at="2026-11-23T10:00:00.000000Z")
    h = chain_hash(base, None)
    for key, value in [("id", "f"), ("stream", "t"), ("version", 1), ("type", "a.c"),
                       ("data", {"k": 2}), ("metadata", {"x": 1}), ("actor", "user:x"),
                       ("correlation_id", "r"), ("causation_id", "c"),
                       ("occurred_at", "2026-11-23T10:00:00.000001Z")]:
        changed = dict(base, **{key: value})
        assert chain_hash(changed, None) != h, key
    assert json.loads(canonical_json(base))["version"] == 0


def test_fast_canonical_json_is_byte_identical_to_json_dumps() -> None:
    """``canonical_json`` calls the C encoder directly; it must equal ``json.dumps``."""
    import random

    rng = random.Random(7)

    def value(depth: int = 0) -> object:
        k = rng.random()
        if depth < 3 and k < 0.3:
            return {rng.choice(["a", "é", "z\n", "\"q", "1", "ß"]): value(depth + 1)
                    for _ in range(rng.randint(0, 4))}
        if depth < 3 and k < 0.45:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        return rng.choice([0, -3, 2.5, 1e300, True, False, None, "", "x\u2028y", "\x01", "😀"])

    for _ in range(500):
        v = {"v": value()}
        assert canonical_json(v) == json.dumps(v, sort_keys=True, separators=(",", ":"),
                                               ensure_ascii=False, allow_nan=False)
    assert canonical_json({}) == "{}"
    cyclic: dict[str, object] = {}
    cyclic["self"] = cyclic
    with pytest.raises(ValueError):
        canonical_json(cyclic)
    with pytest.raises(TypeError):
        canonical_json({"x": object()})


def test_format_ts_matches_strftime() -> None:
    from datetime import timedelta, timezone

    tz = timezone(timedelta(hours=-5, minutes=-30))
    for ts in (datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC),
               datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
               datetime(2026, 6, 30, 22, 0, 0, 120, tzinfo=tz), datetime.max.replace(tzinfo=UTC)):
        assert format_ts(ts) == ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_format_ts_c_helper_agrees_with_python() -> None:
    """The C helper (built in CI) formats exact UTC datetimes with four-digit years and
    hands everything else to ``format_ts_py``; both give strftime's text."""
    import random
    from datetime import timedelta, timezone

    from eventstore import _speedups
    from eventstore.canonical import format_ts_py

    class Sub(datetime):
        pass

    rng = random.Random(4)
    zones = [UTC, UTC, timezone(timedelta(hours=5, minutes=45)), timezone(-timedelta(hours=11))]
    span = (datetime.max.replace(tzinfo=UTC) - datetime.min.replace(tzinfo=UTC)).total_seconds()
    for n in range(20000):
        ts = datetime.min.replace(tzinfo=UTC) + timedelta(seconds=rng.random() * span,
                                                          microseconds=rng.randrange(10**6))
        if n % 5 == 0:
            ts = ts.replace(microsecond=0)
        ts = ts.astimezone(rng.choice(zones)) if 1 < ts.year < 9999 else ts
        want = ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert format_ts(ts) == format_ts_py(ts) == want, ts
        c = _speedups.format_utc(ts)
        assert c == (want if ts.tzinfo is UTC and ts.year >= 1000 else None), ts
    sub = Sub(2026, 1, 2, tzinfo=UTC)
    assert _speedups.format_utc(sub) is None and format_ts(sub) == "2026-01-02T00:00:00.000000Z"
    assert _speedups.format_utc("2026-01-02") is None  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        format_ts(datetime(2026, 1, 2))
