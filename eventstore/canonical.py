"""Canonical encoding, hashing and identifiers, with the standard library only.

Why stdlib-only: the Claude Code hook path must start in a few tens of milliseconds and
cannot afford pydantic; it still has to produce byte-identical hashes. (``format_ts``
uses the optional C helper ``eventstore._speedups`` when it is built: our own module,
under a millisecond to load.) Everything that
defines what an event *is* on disk (canonical JSON, the hash chain, UUIDv7, the rules
for stream and type names) therefore lives here and nowhere else.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from json.encoder import c_make_encoder as _make_encoder  # type: ignore[attr-defined]
from json.encoder import encode_basestring as _encode_str
from typing import Any

#: Stream names: printable, no whitespace at the ends, at most 200 characters.
#: ``$``-prefixed streams are reserved for the store itself (``$retention``).
STREAM_RE = re.compile(r"^\$?[A-Za-z0-9][A-Za-z0-9_.:@/+=-]{0,199}\Z")
#: Event types: dotted segments, e.g. ``tool.completed`` or ``claude.hook.Notification``.
TYPE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+){0,15}\Z")
MAX_TYPE_LEN = 200
#: Actors: ``orchestrator``, ``agent:<name>``, ``user:<name>``, ``claude-code`` ...
ACTOR_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*(:[^\s:][^\s]{0,199})?\Z")

GENESIS = None  # prev_hash of version 0


def stream_name_problem(name: object, *, allow_reserved: bool = False) -> str | None:
    """Return why ``name`` is not a valid stream name, or None when it is."""
    if not isinstance(name, str):
        return f"stream name must be a string, got {type(name).__name__}"
    if not STREAM_RE.match(name):
        return (
            f"invalid stream name {name!r}: 1-200 characters of letters, digits and "
            "_ . : @ / + = -, starting with a letter or digit"
        )
    if name.startswith("$") and not allow_reserved:
        return f"stream name {name!r} is reserved: names starting with '$' belong to the store"
    return None


def type_problem(name: object) -> str | None:
    """Return why ``name`` is not a valid event type, or None when it is."""
    if not isinstance(name, str):
        return f"event type must be a string, got {type(name).__name__}"
    if len(name) > MAX_TYPE_LEN or not TYPE_RE.match(name):
        return (
            f"invalid event type {name!r}: dotted segments of letters, digits, _ and -, "
            "starting with a letter (e.g. 'tool.completed')"
        )
    return None


def actor_problem(name: object) -> str | None:
    if not isinstance(name, str):
        return f"actor must be a string, got {type(name).__name__}"
    if not ACTOR_RE.match(name):
        return (
            f"invalid actor {name!r}: e.g. 'orchestrator', 'agent:<name>', 'user:<name>', "
            "'claude-code'"
        )
    return None


def canonical_json(obj: Any) -> str:
    """The one JSON encoding hashes are computed over: sorted keys, no spaces, UTF-8.

    NaN and infinities are refused (they are not JSON), so every stored document is
    portable to PostgreSQL JSONB and back. With orjson loaded (``use_fast_json``) the text
    comes from orjson whenever it is provably the stdlib's, else from the stdlib: the
    bytes, and so every hash, never depend on what is installed.
    """
    if type(obj) is dict and not obj:
        return "{}"  # most metadata: skip the encoder entirely
    if _orjson_dumps is not None:
        text = _fast_canonical(obj)
        if text is not None:
            return text
    return _stdlib_canonical(obj)


def canonical_many(values: list[Any]) -> list[str]:
    """``canonical_json`` of each value, the same texts, checked as one batch with orjson.

    ``_fast_canonical`` proves orjson's text per value (a parse back, a comparison and
    a scan for small floats): on the append path that is three calls per event. Here
    the batch's texts are joined once and the same three checks run over the whole
    array; only when the batch fails them is each value encoded on its own, so the
    texts never differ from ``canonical_json``'s.
    """
    if _orjson_dumps is None or len(values) < 2:
        return [canonical_json(v) for v in values]
    dumps = _orjson_dumps
    opts = _ORJSON_OPTS
    try:
        outs = [dumps(v, _refuse, opts) for v in values]
    except TypeError:  # a value orjson will not write as we do: each on its own
        return [canonical_json(v) for v in values]
    joined = b",".join(outs)
    if ((b"." in joined and b"0.0000" in joined)
            or (b"e-" in joined and _SMALL_FLOAT.search(joined) is not None)
            or _orjson_loads(b"[" + joined + b"]") != values):
        return [canonical_json(v) for v in values]
    return [o.decode() for o in outs]


def _stdlib_canonical(obj: Any) -> str:
    if _make_encoder is None:  # pragma: no cover - CPython always has the C encoder
        return _CANONICAL.encode(obj)
    # What ``JSONEncoder.encode`` does for these options, minus two Python frames and the
    # closure it builds per call: a fresh C encoder (fresh ``markers``: cycles still raise
    # ValueError) called directly. A unit test holds the bytes equal to ``json.dumps``.
    return "".join(_make_encoder({}, _CANONICAL.default, _encode_str, None, ":", ",",
                                 True, False, False)(obj, 0))


#: ``json.dumps`` with these options builds a new encoder on every call; one shared encoder
#: gives the same bytes without that cost (it keeps no state between calls).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False)

# ---- orjson, when installed (extra ``fast``) -------------------------------------------------
#
# orjson with sorted keys writes the same bytes as ``_CANONICAL`` for every value made of
# dict, list, str, int, float, bool and None, with two exceptions, both handled:
# - floats with 0 < |x| < 1e-4: Python writes ``1e-05``, orjson ``0.00001`` or ``1e-5``.
#   Such a float always puts ``e-`` after a digit or ``0.0000`` in orjson's text; either
#   sends the value to the stdlib (so can a string that happens to hold them: slower,
#   never wrong). Every other float has the same shortest round-trip digits and form
#   (``tests/unit/test_canonical.py`` sweeps the exponent range).
# - integers beyond 64 bits: orjson raises; the stdlib writes them.
# and orjson accepts a few things the stdlib refuses: NaN and infinities (written as
# ``null``), ``uuid.UUID``, plain ``enum.Enum`` members and ``orjson.Fragment``. Reading
# the text back and comparing it with the value catches all of them (they do not equal
# what they turn into), and the stdlib then raises as it always did. Subclasses of
# str/int/dict/list, dataclasses and datetimes go to ``_refuse`` and so to the stdlib.
# Unicode escapes, key order (UTF-8 byte order is code point order) and nesting are the
# same; deeper than orjson's 255 levels or cyclic also falls back.

_orjson_dumps: Any = None
_orjson_loads: Any = None
_ORJSON_OPTS = 0
_SMALL_FLOAT = re.compile(rb"[0-9]e-")


def _refuse(obj: Any) -> Any:
    raise TypeError


def _fast_canonical(obj: Any) -> str | None:
    try:
        out = _orjson_dumps(obj, _refuse, _ORJSON_OPTS)
    except TypeError:  # orjson.JSONEncodeError: a type or value it will not write as we do
        return None
    if ((b"." in out and b"0.0000" in out) or _has_small_exponent(out)
            or _orjson_loads(out) != obj):
        return None
    text: str = out.decode()
    return text


def _has_small_exponent(out: bytes) -> bool:
    """Does ``out`` hold a digit followed by ``e-`` (``_SMALL_FLOAT``)?

    A search for the two bytes ``e-`` scans about as slowly as orjson parses the whole
    text back, so the few ``-`` of a typical document are visited instead (memchr) and
    their two bytes before compared; with more than four, the plain search.
    """
    i = out.find(b"-")
    seen = 0
    while i >= 0:
        if i >= 2 and out[i - 1] == 101 and 48 <= out[i - 2] <= 57:  # digit, "e", "-"
            return True
        seen += 1
        if seen > 4:
            return b"e-" in out and _SMALL_FLOAT.search(out) is not None
        i = out.find(b"-", i + 1)
    return False


def use_fast_json() -> bool:
    """Load orjson (extra ``fast``) for ``canonical_json`` and ``loads``; True if present.

    Not done at import: orjson costs about 15 ms to import and the Claude Code hook path
    (stdlib only) starts in a few tens of milliseconds. Stores call this when they open.
    """
    global _orjson_dumps, _orjson_loads, _ORJSON_OPTS
    if _orjson_dumps is not None:
        return True
    try:
        import orjson
    except ImportError:
        return False
    _ORJSON_OPTS = (orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_SUBCLASS
                    | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS)
    _orjson_loads = orjson.loads
    _orjson_dumps = orjson.dumps
    return True


_scan_once = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # C scanner
#: ``bytes.translate`` table: every digit becomes ``0``, everything else a space.
_DIGITS_ONLY = bytes(48 if 48 <= c <= 57 else 32 for c in range(256))
_LONG_NUMBER = b"0" * 19


def loads(text: str) -> Any:
    """Parse JSON text the store wrote (canonical JSON), as ``json.loads`` would.

    Reads decode two documents per event, so this skips what canonical text never needs:
    ``"{}"`` (most metadata) is answered directly, and the stdlib's C scanner is called
    without ``json.loads``'s whitespace handling. With orjson loaded it parses instead,
    unless the text holds a run of 19 digits: orjson reads an integer beyond 64 bits as a
    float, and that would change the value and so its hash.
    """
    if text == "{}":
        return {}
    if type(text) is not str:  # not what the store writes (a tampered row): as json.loads
        return json.loads(text)
    if _orjson_loads is not None:
        raw = text.encode()
        if _LONG_NUMBER not in raw.translate(_DIGITS_ONLY):
            try:
                return _orjson_loads(raw)
            except ValueError:  # orjson.JSONDecodeError; let the stdlib decide and word it
                pass
    try:
        value, end = _scan_once(text, 0)
    except StopIteration:
        end = -1
    if end != len(text):
        return json.loads(text)  # whitespace, trailing text or not JSON: the stdlib's answer
    return value


_fromisoformat = datetime.fromisoformat

_format_utc: Callable[[datetime], str | None] | None
try:  # optional C helper (pip builds it where a C compiler is present)
    from eventstore._speedups import format_utc as _format_utc
except ImportError:  # pragma: no cover - installs without a compiler
    _format_utc = None


def format_ts(ts: datetime) -> str:
    """UTC timestamp with microseconds and a Z, the only form stored or hashed.

    The common case (an exact ``datetime`` in ``UTC``, a four-digit year) is formatted by
    the C helper when it is built (``eventstore/_speedups.c``: a fifth of the cost; this
    runs once per event appended); everything else, or no helper, by ``format_ts_py``.
    """
    if _format_utc is not None:
        text = _format_utc(ts)
        if text is not None:
            return text
    return format_ts_py(ts)


def format_ts_py(ts: datetime) -> str:
    """``format_ts`` in Python (the reference the C helper is tested against)."""
    if ts.tzinfo is not UTC:
        if ts.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        ts = ts.astimezone(UTC)
    if ts.year < 1000:  # strftime does not zero-pad such years; keep its exact bytes
        return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # the same text as the strftime above at a third of the cost (runs twice per event)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 - twice as fast as f"{:02d}"
        ts.year, ts.month, ts.day, ts.hour, ts.minute, ts.second, ts.microsecond)


def parse_ts(text: str) -> datetime:
    ts = _fromisoformat(text)  # Python 3.11 reads the trailing Z as UTC
    if ts.tzinfo is UTC:  # every stored timestamp: no conversion needed
        return ts
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    ts = datetime.fromisoformat(text)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


def hash_body(
    *,
    id: str,
    stream: str,
    version: int,
    type: str,
    data: Any,
    metadata: Any,
    actor: str,
    correlation_id: str | None,
    causation_id: str | None,
    occurred_at: str,
) -> dict[str, Any]:
    """The fields covered by the chain. Positions and recorded_at are excluded on purpose:
    they are assigned by a particular store, and ``store copy`` must keep hashes intact."""
    return {
        "id": id,
        "stream": stream,
        "version": version,
        "type": type,
        "data": data,
        "metadata": metadata,
        "actor": actor,
        "correlation_id": correlation_id,
        "causation_id": causation_id,
        "occurred_at": occurred_at,
    }


def chain_hash(body: dict[str, Any], prev_hash: str | None) -> str:
    """SHA-256 over the canonical JSON of the event body and the previous link."""
    doc = dict(body)
    doc["prev_hash"] = prev_hash
    return hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()


_sha256 = hashlib.sha256

_last_ms = 0
_seq = 0


def uuid7() -> uuid.UUID:
    """RFC 9562 UUIDv7: time-ordered, so ids sort roughly by creation, random otherwise.

    Monotonic within a process: a 12-bit counter in ``rand_a`` orders ids made in the
    same millisecond.
    """
    global _last_ms, _seq
    ms = time.time_ns() // 1_000_000
    if ms <= _last_ms:
        _seq += 1
        if _seq > 0xFFF:
            _last_ms += 1
            _seq = 0
        ms = _last_ms
    else:
        _last_ms = ms
        _seq = int.from_bytes(os.urandom(2), "big") & 0x3FF
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | _seq << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


def _s(value: str | None) -> str:
    # exactly what json.dumps(value, ensure_ascii=False) returns for a str, minus the
    # per-call encoder construction (this runs eight times per event on the append path)
    return "null" if value is None else _encode_str(value)


def chain_hash_parts(
    *,
    id: str,
    stream: str,
    version: int,
    type: str,
    data_json: str,
    metadata_json: str,
    actor: str,
    correlation_id: str | None,
    causation_id: str | None,
    occurred_at: str,
    prev_hash: str | None,
) -> str:
    """``chain_hash`` from already-canonical ``data``/``metadata`` text, without re-encoding.

    The append path encodes each payload once (to store it) and reuses that text here;
    keys are written in sorted order by hand, so the result is byte-identical to
    ``canonical_json`` of the full document (a unit test holds the two together).
    """
    return chain_hash_row(id, stream, version, type, data_json, metadata_json, actor,
                          correlation_id, causation_id, occurred_at, prev_hash)


def chain_hash_row(
    id: str, stream: str, version: int, type: str, data_json: str, metadata_json: str,
    actor: str, correlation_id: str | None, causation_id: str | None, occurred_at: str,
    prev_hash: str | None,
) -> str:
    """``chain_hash_parts`` with positional arguments: every field JSON-encoded here."""
    e = _encode_str
    return chain_hash_json(
        "null" if actor is None else e(actor),
        "null" if causation_id is None else e(causation_id),
        "null" if correlation_id is None else e(correlation_id),
        data_json, "null" if id is None else e(id), metadata_json,
        "null" if occurred_at is None else e(occurred_at),
        "null" if prev_hash is None else e(prev_hash),
        "null" if stream is None else e(stream),
        "null" if type is None else e(type), int(version))


def chain_hash_json(
    actor: str, causation_id: str, correlation_id: str, data: str, id: str, metadata: str,
    occurred_at: str, prev_hash: str, stream: str, type: str, version: int,
) -> str:
    """The chain hash from the JSON text of each field (arguments in the document's key
    order): the one place the hashed document is written, byte for byte the
    ``canonical_json`` of ``hash_body`` plus ``prev_hash``. ``append.build_values`` calls
    it with texts it encoded once per batch; ``chain_hash_row`` encodes them per call.
    """
    return _sha256((
        f'{{"actor":{actor},"causation_id":{causation_id},"correlation_id":{correlation_id},'
        f'"data":{data},"id":{id},"metadata":{metadata},"occurred_at":{occurred_at},'
        f'"prev_hash":{prev_hash},"stream":{stream},"type":{type},"version":{version}}}'
    ).encode()).hexdigest()
