"""Translate a ``Query`` into SQL that agrees exactly with ``Query.matches`` and stays fast.

Semantics first: every filter becomes a condition with the same meaning as the reference
``Query.matches``. Prefixes (``stream_prefix``, ``tool.*``) become half-open ranges
``value >= prefix AND value < next(prefix)``: with SQLite's BINARY collation text compares
as UTF-8 bytes, which orders exactly like Python's code-point comparison, so the range
holds precisely the strings ``str.startswith`` accepts (no LIKE, so no ``%``/``_``
escaping and no ASCII case folding to get wrong). Timestamps are stored in the one
canonical form (``format_ts``: fixed width, UTC, microseconds), so text order is time
order.

Speed second: the table's rowid is the position, so an index on ``type`` is really an
index on ``(type, position)``. The page query is driven by the most selective equality
filter present (correlation id, then stream, then types, then actors) and forced onto
its index with ``INDEXED BY``, so the plan never depends on statistics: a seek to
``(value, after)`` and an in-order walk that stops at ``limit``. Several values (two
actors, ``tool.*`` expanded to the concrete types present) become one arm per value in a
``UNION ALL ... ORDER BY position``, which SQLite executes as a merge of already-ordered
arms, so the first page still stops after ``limit`` rows. Without an equality filter, a
time window or stream prefix that a capped count (``probe_sql``) finds narrow drives the
page through its index; otherwise the page walks the table in position order and filters
as it goes (fast exactly when matches are dense).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eventstore.backends.sqlite_schema import COLUMNS
from eventstore.canonical import format_ts
from eventstore.model import Query

#: More arms than this and the page falls back to a position-order scan with ``IN (...)``.
MAX_ARMS = 32


def prefix_upper(prefix: str) -> str | None:
    """The least string greater than every string that starts with ``prefix``.

    None when there is no such bound (the prefix is empty or all U+10FFFF).
    """
    chars = list(prefix)
    while chars:
        code = ord(chars[-1])
        if code < 0x10FFFF:
            code += 1
            if 0xD800 <= code <= 0xDFFF:  # surrogates cannot be encoded; skip past them
                code = 0xE000
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None


def prefix_condition(column: str, prefix: str) -> tuple[str, list[Any]]:
    """``column`` starts with ``prefix``, as an index-friendly range."""
    if not prefix:
        return "1", []
    upper = prefix_upper(prefix)
    if upper is None:
        return f"{column} >= ?", [prefix]
    return f"({column} >= ? AND {column} < ?)", [prefix, upper]


def type_prefixes(query: Query) -> list[str]:
    """The ``tool.`` prefixes of the ``tool.*`` patterns (empty when ``*`` is present)."""
    if query.types is None or "*" in query.types:
        return []
    return [t[:-1] for t in query.types if t.endswith(".*")]


def expand_sql(prefix: str) -> tuple[str, list[Any]]:
    """The distinct stored types under ``prefix``, one index seek per type (a skip scan)."""
    upper = prefix_upper(prefix)
    assert upper is not None  # prefixes of type patterns end in "."
    sql = (
        "WITH RECURSIVE t(v) AS ("
        " SELECT (SELECT min(type) FROM events WHERE type >= ? AND type < ?)"
        " UNION ALL"
        " SELECT (SELECT min(type) FROM events WHERE type > t.v AND type < ?)"
        " FROM t WHERE t.v IS NOT NULL"
        f" LIMIT {MAX_ARMS + 2}"
        ") SELECT v FROM t WHERE v IS NOT NULL"
    )
    return sql, [prefix, upper, upper]


@dataclass
class Conditions:
    parts: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def add(self, sql: str, params: list[Any] | None = None) -> None:
        self.parts.append(sql)
        self.params.extend(params or [])

    def sql(self) -> str:
        return " AND ".join(self.parts) if self.parts else "1"


def filter_conditions(query: Query, skip: str | None = None) -> Conditions:
    """Every filter of ``query`` as SQL, except the one named by ``skip`` (the driver)."""
    c = Conditions()
    if query.correlation_id is not None and skip != "correlation_id":
        c.add("correlation_id = ?", [query.correlation_id])
    if query.stream is not None and skip != "stream":
        c.add("stream = ?", [query.stream])
    if query.stream_prefix is not None:
        sql, params = prefix_condition("stream", query.stream_prefix)
        c.add(sql, params)
    if query.types is not None and "*" not in query.types and skip != "types":
        if not query.types:
            c.add("0")
        else:
            ors: list[str] = []
            values: list[Any] = []
            exact = [t for t in query.types if not t.endswith(".*")]
            if exact:
                ors.append(f"type IN ({', '.join('?' * len(exact))})")
                values.extend(exact)
            for prefix in type_prefixes(query):
                cond, p = prefix_condition("type", prefix)
                ors.append(cond)
                values.extend(p)
            c.add("(" + " OR ".join(ors) + ")", values)
    if query.actors is not None and skip != "actors":
        if not query.actors:
            c.add("0")
        else:
            c.add(f"actor IN ({', '.join('?' * len(query.actors))})", list(query.actors))
    if query.since is not None:
        c.add("occurred_at >= ?", [format_ts(query.since)])
    if query.until is not None:
        c.add("occurred_at < ?", [format_ts(query.until)])
    return c


#: A range filter matching at most this many events after the cursor drives the page
#: through its index; more, and walking the table in position order finds a page sooner.
NARROW = 5_000

_RANGE_INDEX = {"time": ("events_occurred", "occurred_at"),
                "prefix": ("events_stream_version", "stream")}


def has_equality_driver(query: Query) -> bool:
    types = query.types
    return (
        query.correlation_id is not None
        or query.stream is not None
        or bool(types is not None and "*" not in types)
        or query.actors is not None
    )


def _range(query: Query, kind: str) -> tuple[str, list[Any]] | None:
    if kind == "time" and (query.since is not None or query.until is not None):
        parts, params = [], []
        if query.since is not None:
            parts.append("occurred_at >= ?")
            params.append(format_ts(query.since))
        if query.until is not None:
            parts.append("occurred_at < ?")
            params.append(format_ts(query.until))
        return " AND ".join(parts), params
    if kind == "prefix" and query.stream_prefix:
        return prefix_condition("stream", query.stream_prefix)
    return None


def probe_sql(query: Query, after: int) -> list[tuple[str, str, list[Any]]]:
    """Cheap counts (capped at ``NARROW + 1``) of the range filters' matches after the cursor.

    A time window or stream prefix can match three events or three million; no statistics
    say which, so the store counts, reading at most ``NARROW`` index entries, and picks
    the plan (``page_sql(..., narrow=kind)``) from the answer. Any plan returns the same
    rows, so the count needs no common snapshot with the page.
    """
    out = []
    for kind in ("time", "prefix"):
        found = _range(query, kind)
        if found is None:
            continue
        cond, params = found
        index = _RANGE_INDEX[kind][0]
        out.append((kind, (
            f"SELECT count(*) FROM (SELECT 1 FROM events INDEXED BY {index} "
            f"WHERE {cond} AND position > ? LIMIT {NARROW + 1})"
        ), [*params, after]))
    return out


def page_sql(query: Query, after: int, limit: int,
             expanded_types: list[str] | None = None,
             narrow: str | None = None) -> tuple[str, list[Any]]:
    """SQL and parameters for one page: matching events with position > ``after``.

    ``expanded_types`` are the stored types under the query's ``prefix.*`` patterns
    (from ``expand_sql``); None when the query has no such pattern. ``narrow`` names a
    range filter (``time`` or ``prefix``) that ``probe_sql`` found to match few events:
    its index then drives the page.
    """
    if query.correlation_id is not None:
        return _arms(query, after, limit, "correlation_id", "events_correlation",
                     "correlation_id", [query.correlation_id])
    if query.stream is not None:
        # (stream, version) is unique and versions rise with positions inside a stream,
        # so version order is position order here and the unique index serves it.
        rest = filter_conditions(query, skip="stream")
        sql = (
            f"SELECT {COLUMNS} FROM events INDEXED BY events_stream_version "
            f"WHERE stream = ? AND position > ? AND {rest.sql()} ORDER BY version LIMIT ?"
        )
        return sql, [query.stream, after, *rest.params, limit]
    types = query.types
    if types is not None and "*" not in types and types:
        values = [t for t in types if not t.endswith(".*")]
        if expanded_types is not None:
            values += expanded_types
        values = sorted(set(values))
        if 0 < len(values) <= MAX_ARMS:
            return _arms(query, after, limit, "types", "events_type", "type", values)
        if not values and expanded_types is not None:
            return _empty()
    if query.actors and len(query.actors) <= MAX_ARMS:
        return _arms(query, after, limit, "actors", "events_actor", "actor",
                     sorted(set(query.actors)))
    rest = filter_conditions(query)
    found = _range(query, narrow) if narrow else None
    if found is not None:
        assert narrow is not None
        cond, params = found
        sql = (
            f"SELECT {COLUMNS} FROM events WHERE position IN ("
            f"SELECT position FROM events INDEXED BY {_RANGE_INDEX[narrow][0]} "
            f"WHERE {cond} AND position > ?) AND {rest.sql()} ORDER BY position LIMIT ?"
        )
        return sql, [*params, after, *rest.params, limit]
    sql = (
        f"SELECT {COLUMNS} FROM events WHERE position > ? AND {rest.sql()} "
        "ORDER BY position LIMIT ?"
    )
    return sql, [after, *rest.params, limit]


def _empty() -> tuple[str, list[Any]]:
    return f"SELECT {COLUMNS} FROM events WHERE 0", []


def _arms(query: Query, after: int, limit: int, skip: str, index: str, column: str,
          values: list[str]) -> tuple[str, list[Any]]:
    rest = filter_conditions(query, skip=skip)
    arm = (
        f"SELECT {COLUMNS} FROM events INDEXED BY {index} "
        f"WHERE {column} = ? AND position > ? AND {rest.sql()}"
    )
    params: list[Any] = []
    for v in values:
        params.extend([v, after, *rest.params])
    if len(values) == 1:
        return f"{arm} ORDER BY position LIMIT ?", [*params, limit]
    sql = " UNION ALL ".join([arm] * len(values)) + " ORDER BY position LIMIT ?"
    return sql, [*params, limit]
