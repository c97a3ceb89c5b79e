"""The append path's shortcuts agree exactly with the plain forms they replace."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from eventstore import canonical, redact
from eventstore.canonical import format_ts
from eventstore.model import AppendResult, append_result, check_stream


def test_small_exponent_scan_equals_the_regex_search() -> None:
    rng = random.Random(7)
    pieces = [b"-", b"e", b"e-", b"1e-5", b"5", b"x", b"call-", b"0.1", b"E-", b"-e"]
    for n in range(20000):
        out = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 4 if n % 2 else 30)))
        assert canonical._has_small_exponent(out) is (
            canonical._SMALL_FLOAT.search(out) is not None), out


def test_g_search_finds_exactly_its_literals() -> None:
    lits = redact._G_LITERALS
    assert all(lit.startswith("g") for lit in lits)
    rng = random.Random(3)
    pieces = [*lits, "gh", "g", "h", "_", "-", "p", "o", "u", "s", "r", "github", "pat", "glpat",
              "gl", "x"]
    for _ in range(20000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        assert (redact._G_SEARCH(text) is not None) is any(lit in text for lit in lits), text


def test_format_ts_gives_strftimes_text_for_subclasses_and_repeats() -> None:
    base = datetime(2026, 11, 23, 13, 0, 0, tzinfo=UTC)
    for ts in (base, base + timedelta(microseconds=1), base.replace(year=1000),
               datetime.max.replace(tzinfo=UTC), base.replace(microsecond=999999)):
        want = ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert format_ts(ts) == want
        assert format_ts(ts) == want

    class Sub(datetime):
        pass

    sub = Sub(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert format_ts(sub) == "2026-01-02T03:04:05.000006Z"
    with pytest.raises(ValueError):
        format_ts(datetime(2026, 1, 2, 3, 4, 5))  # naive: refused as before


def test_append_result_fast_constructor_equals_validated() -> None:
    fast = append_result("run-1", 0, 9, 11, 20)
    slow = AppendResult(stream="run-1", first_version=0, last_version=9, first_position=11,
                        last_position=20)
    assert fast == slow
    assert fast.model_dump() == slow.model_dump()
    assert fast.model_fields_set == slow.model_fields_set
    assert repr(fast) == repr(slow)


def test_check_stream_memo_still_refuses_reserved_and_bad_names() -> None:
    from eventstore.errors import InvalidEvent

    check_stream("run-memo")
    check_stream("run-memo")
    check_stream("$retention", allow_reserved=True)
    with pytest.raises(InvalidEvent):
        check_stream("$retention")
    with pytest.raises(InvalidEvent):
        check_stream("bad name")
