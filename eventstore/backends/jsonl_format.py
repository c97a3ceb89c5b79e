"""The on-disk form of the JSONL backend: one event per line, batches marked, tails judged.

Why a batch marker on every line: one append is atomic, but a writer killed in the middle
of its single ``write()`` (or a power cut before the page cache reached the disk) can
leave a prefix of the batch behind. Each line carries ``"batch":[i,n]`` (line *i* of *n*),
so a reader can tell "the last batch is whole" from "the last batch was cut short"
without any other file. A batch is committed once its last line, newline included, is
in the file; everything after the last committed batch is an incomplete tail that only
a writer holding the lock may cut off.

Lines are the stable JSON of ``RecordedEvent.to_json_dict()`` (same keys, same order)
plus ``batch``; ``data`` and ``metadata`` are written in their canonical form, the very
text the hash was computed over, so ``grep``, ``jq`` and ``git diff`` see what was hashed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from eventstore.append import Row
from eventstore.canonical import parse_ts
from eventstore.errors import StoreCorrupted
from eventstore.model import RecordedEvent

#: ``segments/00000001.jsonl``: fixed width, so ``ls`` and ``cat segments/*`` keep log order.
SEGMENT_RE = re.compile(r"^(\d{8})\.jsonl$")


def segment_name(seq: int) -> str:
    return f"{seq:08d}.jsonl"


def _s(value: str | None) -> str:
    return "null" if value is None else json.dumps(value, ensure_ascii=False)


def encode_line(row: Row, position: int, index: int, count: int) -> bytes:
    """One event as one line, keys in ``to_json_dict`` order, built without re-encoding.

    ``row.data_json``/``row.metadata_json`` are the canonical text the hash covers;
    ``json.dumps`` escapes every control character, so no value can contain a newline.
    """
    text = (
        '{"id":' + _s(row.id)
        + ',"stream":' + _s(row.stream)
        + ',"version":' + str(row.version)
        + ',"position":' + str(position)
        + ',"type":' + _s(row.type)
        + ',"data":' + row.data_json
        + ',"metadata":' + row.metadata_json
        + ',"actor":' + _s(row.actor)
        + ',"correlation_id":' + _s(row.correlation_id)
        + ',"causation_id":' + _s(row.causation_id)
        + ',"occurred_at":"' + row.occurred_at_text
        + '","recorded_at":"' + row.recorded_at_text
        + '","prev_hash":' + _s(row.prev_hash)
        + ',"hash":"' + row.hash
        + '","batch":[' + str(index) + "," + str(count) + "]}\n"
    )
    return text.encode("utf-8")


class IndexRow(NamedTuple):
    """What the sidecar index keeps about one line (see ``jsonl_index``)."""

    position: int
    id: str
    stream: str
    version: int
    type: str
    actor: str
    correlation_id: str | None
    occurred_at: str
    recorded_at: str
    hash: str
    seg: int
    off: int
    len: int
    line: int


_STR_FIELDS = ("id", "stream", "type", "actor", "occurred_at", "recorded_at", "hash")
_OPT_FIELDS = ("correlation_id", "causation_id", "prev_hash")


def parse_line(raw: bytes) -> tuple[dict[str, Any], int, int]:
    """Decode and check one line; returns (document, i, n). Raises ValueError saying why."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    for key in _STR_FIELDS:
        if not isinstance(doc.get(key), str):
            raise ValueError(f"field {key!r} is missing or not a string")
    for key in _OPT_FIELDS:
        if not isinstance(doc.get(key), str | None):
            raise ValueError(f"field {key!r} is not a string or null")
    for key in ("version", "position"):
        v = doc.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"field {key!r} is missing or not an integer >= 0")
    if doc["position"] < 1:
        raise ValueError("field 'position' must be >= 1")
    for key in ("data", "metadata"):
        if not isinstance(doc.get(key), dict):
            raise ValueError(f"field {key!r} is missing or not an object")
    batch = doc.get("batch", [1, 1])
    if (
        not isinstance(batch, list) or len(batch) != 2
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in batch)
        or not 1 <= batch[0] <= batch[1]
    ):
        raise ValueError("field 'batch' must be [i, n] with 1 <= i <= n")
    try:
        parse_ts(doc["occurred_at"])
        parse_ts(doc["recorded_at"])
    except ValueError:
        raise ValueError("occurred_at/recorded_at is not a timestamp") from None
    return doc, batch[0], batch[1]


def to_event(doc: dict[str, Any]) -> RecordedEvent:
    """A checked line as a RecordedEvent (no second validation: ``parse_line`` did it)."""
    return RecordedEvent.model_construct(
        id=doc["id"],
        stream=doc["stream"],
        version=doc["version"],
        position=doc["position"],
        type=doc["type"],
        data=doc["data"],
        metadata=doc["metadata"],
        actor=doc["actor"],
        correlation_id=doc["correlation_id"],
        causation_id=doc["causation_id"],
        occurred_at=parse_ts(doc["occurred_at"]),
        recorded_at=parse_ts(doc["recorded_at"]),
        prev_hash=doc["prev_hash"],
        hash=doc["hash"],
    )


def decode_event(raw: bytes) -> RecordedEvent:
    """Decode a line the index pointed at (the read path: lighter than ``parse_line``)."""
    try:
        return to_event(json.loads(raw))
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a valid event line ({type(exc).__name__}: {exc})") from None


def index_row(doc: dict[str, Any], seg: int, off: int, length: int, line: int) -> IndexRow:
    return IndexRow(
        doc["position"], doc["id"], doc["stream"], doc["version"], doc["type"],
        doc["actor"], doc["correlation_id"], doc["occurred_at"], doc["recorded_at"],
        doc["hash"], seg, off, length, line,
    )


@dataclass(slots=True)
class ScanResult:
    """A segment (or its tail) read line by line.

    ``rows`` holds only committed batches. ``end``/``lines`` say where they stop (absolute
    offset, line count). ``tail`` describes the bytes after ``end`` that a writer may cut
    off, or is None when the segment ends on a committed batch.
    """

    rows: list[IndexRow] = field(default_factory=list)
    end: int = 0
    lines: int = 0
    last_position: int = 0
    tail: str | None = None


def scan(
    path: str,
    seg: int,
    data: bytes,
    *,
    base_offset: int = 0,
    base_line: int = 0,
    after_position: int = 0,
    committed_head: int = 0,
    repair_from: int | None = None,
) -> ScanResult:
    """Read ``data`` (the segment's bytes from ``base_offset``) into index rows.

    Rules, in the order they matter:

    - every complete line must be a valid event with a position above the one before,
      otherwise ``StoreCorrupted`` names ``path:line`` (a damaged committed event is
      never dropped silently);
    - the exception is damage that is provably unacknowledged: invalid lines after the
      last committed batch that start at or beyond ``repair_from`` (the byte size the
      index had recorded as committed) belong to the incomplete tail;
    - lines of a batch whose last line is missing are the incomplete tail, unless their
      positions are at or below ``committed_head`` (the index saw them committed: then
      the end of the file was lost or edited, and they are kept for ``verify`` to judge);
    - batch markers are not enforced in the middle of a file, so an event deleted by hand
      shows up in ``verify`` as a chain problem rather than making the store unopenable;
    - a final fragment without a newline is always the incomplete tail.
    """
    if repair_from is None:
        repair_from = base_offset + len(data) + 1
    out = ScanResult(end=base_offset, lines=base_line, last_position=after_position)
    pending: list[IndexRow] = []
    bad: tuple[int, int, str] | None = None  # (line, offset, why)
    last = after_position
    pos = 0
    line = base_line
    size = len(data)
    while pos < size:
        nl = data.find(b"\n", pos)
        if nl < 0:
            break
        line += 1
        raw = data[pos:nl]
        try:
            doc, i, n = parse_line(raw)
        except ValueError as exc:
            if bad is None:
                bad = (line, base_offset + pos, str(exc))
            pos = nl + 1
            continue
        if bad is not None:
            raise StoreCorrupted(f"{path}:{bad[0]}: {bad[2]}")
        if doc["position"] <= last:
            raise StoreCorrupted(
                f"{path}:{line}: position {doc['position']} does not rise above {last}"
            )
        last = doc["position"]
        pending.append(index_row(doc, seg, base_offset + pos, nl + 1 - pos, line))
        if i == n:
            out.rows.extend(pending)
            pending = []
            out.end = base_offset + nl + 1
            out.lines = line
            out.last_position = last
        pos = nl + 1
    if pending and pending[-1].position <= committed_head:
        keep = pending
        out.rows.extend(keep)
        out.end = keep[-1].off + keep[-1].len
        out.lines = keep[-1].line
        out.last_position = keep[-1].position
        pending = []
    if bad is not None and bad[1] < repair_from:
        raise StoreCorrupted(f"{path}:{bad[0]}: {bad[2]}")
    total = base_offset + size
    if out.end < total:
        what = []
        if pending:
            what.append(f"{len(pending)} line(s) of an unfinished batch")
        if bad is not None:
            what.append(f"unacknowledged damaged line {bad[0]}")
        if pos < size:
            what.append("a line without its newline")
        out.tail = ", ".join(what) or "incomplete data"
    return out


def split_lines(data: bytes, spans: Sequence[tuple[int, int]], base: int) -> list[bytes]:
    """Cut lines out of a buffer read from offset ``base``."""
    return [data[off - base: off - base + length] for off, length in spans]
