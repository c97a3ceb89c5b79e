"""orjson (extra ``fast``) must never change a byte of canonical JSON nor a value read back.

The hash chain is computed over ``canonical_json``'s text, and stores written with orjson
installed are verified by processes without it (the Claude Code hook path is stdlib only)
and the other way round. These tests hold the orjson path to the stdlib's output: equal
text for everything the stdlib writes, the same exception for everything it refuses.
orjson is a test dependency (the dev extra installs ``fast``): its absence fails here.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import random
import struct
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from eventstore import canonical
from eventstore.canonical import canonical_json, canonical_many, loads, parse_ts, use_fast_json

assert orjson.dumps  # a missing extra fails at import, loudly


def stdlib(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


@pytest.fixture(autouse=True)
def fast() -> None:
    assert use_fast_json()
    assert canonical._orjson_dumps is not None


def _random_float(rng: random.Random) -> float:
    while True:
        k = rng.random()
        if k < 0.4:  # any bit pattern: every exponent
            f = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
        elif k < 0.8:  # decades around the notation switches (1e-4, 1e16)
            f = rng.uniform(1, 10) * 10.0 ** rng.randint(-8, 20)
        else:
            f = float(rng.choice([0.0, -0.0, 1e16, 1e15, 9999999999999998.0, 1e-4, 1e-5,
                                  0.0001, 0.00009999, 5e-324, 1.7976931348623157e308, 0.1]))
        if math.isfinite(f):
            return -f if rng.random() < 0.3 else f


def _value(rng: random.Random, depth: int = 0) -> Any:
    k = rng.random()
    if depth < 4 and k < 0.25:
        return {rng.choice(["a", "é", "z\n", "\"q", "1", "ß", "日本", "\U0001f600", "", "A",
                            "\x7f", "e-5"]) + str(rng.randint(0, 3)): _value(rng, depth + 1)
                for _ in range(rng.randint(0, 5))}
    if depth < 4 and k < 0.4:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if k < 0.6:
        return _random_float(rng)
    if k < 0.7:
        return rng.choice([0, -1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -2**63, -2**63 - 1,
                           10**30, -10**40, 1234567890123456789])
    return rng.choice([True, False, None, "", "x\u2028y", "\x01\x1f\"\\/", "😀", "é" * 40,
                       "0.00001", "1e-05 and 1e-5", "\ufeff", "tab\there"])


@pytest.mark.parametrize("seed", range(8))
def test_orjson_path_writes_the_stdlib_bytes(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(1500):
        value = {"v": _value(rng)}
        assert canonical_json(value) == stdlib(value)


@pytest.mark.parametrize("seed", range(4))
def test_canonical_many_writes_each_values_stdlib_bytes(seed: int) -> None:
    """The batch check passes or fails as a whole; either way every text is the stdlib's,
    batches of plain payloads and batches with one awkward value alike."""
    rng = random.Random(1000 + seed)
    for n in range(300):
        values: list[Any] = [{"v": _value(rng)} for _ in range(rng.randint(0, 12))]
        if n % 3 == 0:
            values = [{"plain": "words " * rng.randint(0, 30), "n": i} for i in range(20)]
            if n % 2:
                values.insert(rng.randint(0, 20), {"small": 1e-5})
        assert canonical_many(values) == [stdlib(v) for v in values]


def test_every_float_form_matches_the_stdlib() -> None:
    rng = random.Random(99)
    for _ in range(50_000):
        f = _random_float(rng)
        assert canonical_json({"f": f}) == stdlib({"f": f}), f
        assert canonical_json([f]) == stdlib([f]), f


class Plain(enum.Enum):
    A = "a"


class Text(enum.StrEnum):
    B = "b"


class Num(enum.IntEnum):
    C = 3


@dataclasses.dataclass
class Point:
    x: int


class MyDict(dict[str, Any]):
    pass


@pytest.mark.parametrize("value", [
    {"x": float("nan")}, {"x": float("inf")}, {"x": -float("inf")}, {"x": uuid.uuid4()},
    {"x": Plain.A}, {"x": datetime.now(UTC)}, {"x": Point(1)}, {"x": object()},
    {"x": orjson.Fragment(b"1")}, {"x": {1: "int key"}}, {"x": (1, 2)}, {"x": Text.B},
    {"x": Num.C}, {"x": MyDict(a=1)}, {"x": {None: 1, True: 2, 1.5: 3}},
    {"x": "lone \ud800 surrogate"}, {"x": [[[[[1]]]]]}, {"x": 10**30},
])
def test_what_orjson_would_write_differently_goes_to_the_stdlib(value: Any) -> None:
    """Accepted values get the stdlib's text; refused ones its exception, orjson or not,
    alone and (``canonical_many``) amid plain values in one batch."""
    batch = [{"a": 1}, value, {"b": "two"}]
    try:
        expected: str | type[BaseException] = stdlib(value)
    except (TypeError, ValueError) as exc:
        expected = type(exc)
    if isinstance(expected, str):
        assert canonical_json(value) == expected
        assert canonical_many(batch) == [stdlib(v) for v in batch]
    else:
        with pytest.raises(expected):
            canonical_json(value)
        with pytest.raises(expected):
            canonical_many(batch)


def test_deep_and_cyclic_values_behave_as_the_stdlib() -> None:
    deep: Any = 1
    for _ in range(300):  # deeper than orjson's limit
        deep = [deep]
    assert canonical_json({"d": deep}) == stdlib({"d": deep})
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    with pytest.raises(ValueError):
        canonical_json(cyclic)


@pytest.mark.parametrize("seed", range(4))
def test_loads_equals_json_loads_on_canonical_text(seed: int) -> None:
    rng = random.Random(1000 + seed)
    for _ in range(1500):
        value = {"v": _value(rng)}
        try:
            text = stdlib(value)
            text.encode()
        except (ValueError, UnicodeEncodeError):
            continue
        got = loads(text)
        assert got == json.loads(text)
        assert canonical_json(got) == text  # the hash recomputes from what was read


def test_loads_keeps_integers_beyond_64_bits_exact() -> None:
    """orjson would read these as floats; the guard sends them to the stdlib."""
    for n in (2**63, 2**64, 2**64 + 1, -2**63 - 1, 10**19, 10**30, 12345678901234567890123):
        text = canonical_json({"n": n, "s": "x"})
        got = loads(text)
        assert got == {"n": n, "s": "x"} and type(got["n"]) is int, n
        assert canonical_json(got) == text


def test_loads_edge_cases() -> None:
    a, b = loads("{}"), loads("{}")
    assert a == {} and a is not b  # callers may mutate what they read
    assert loads(' {"a": 1} ') == {"a": 1}  # not canonical, still JSON: the stdlib reads it
    with pytest.raises(ValueError):
        loads('{"a": 1} x')
    with pytest.raises(ValueError):
        loads("not json")
    with pytest.raises(ValueError):
        loads("")
    assert loads(b'{"a":1}') == {"a": 1}  # a BLOB where text belongs: read as json.loads does
    with pytest.raises(TypeError):
        loads(None)  # type: ignore[arg-type]


def test_parse_ts_fast_path_and_other_forms() -> None:
    ts = parse_ts("2026-11-23T10:00:00.000001Z")
    assert ts == datetime(2026, 11, 23, 10, 0, 0, 1, tzinfo=UTC) and ts.tzinfo is UTC
    assert parse_ts("2026-11-23T10:00:00+00:00").tzinfo is UTC
    other = parse_ts("2026-11-23T12:00:00+02:00")
    assert other == datetime(2026, 11, 23, 10, tzinfo=UTC) and other.tzinfo is UTC
    naive = parse_ts("2026-11-23T10:00:00")
    assert naive == datetime(2026, 11, 23, 10, tzinfo=UTC) and naive.tzinfo is UTC
    tz = timezone(timedelta(hours=-5))
    assert parse_ts(datetime(2026, 1, 1, tzinfo=tz).isoformat()).tzinfo is UTC
    with pytest.raises(ValueError):
        parse_ts("yesterday")
