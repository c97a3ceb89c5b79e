"""How orchestrail events map onto EventStoreDB/KurrentDB records, names, URLs and filters.

Kept apart from the store so the mapping can be read (and tested) without a server:

- **Stream names** map 1:1, behind an optional namespace (``?namespace=t1-`` prefixes every
  stream, so several stores can share one database). Our reserved ``$`` streams cannot be
  ESDB names (ESDB keeps ``$`` for its own system streams), so ``$retention`` is stored as
  ``_orchestrail-retention``: a leading ``_`` is outside our stream-name rules, so it can
  never collide with a user's stream.
- **Event ids**: ESDB ids are UUIDs. A UUID id is used as is; any other id string becomes
  a name-based UUID (uuid5), so the same id always lands on the same ESDB id and ESDB's
  own per-stream idempotency keeps working. The original string travels in the metadata.
- **Data** is the canonical JSON of ``data`` (the exact bytes the hash was computed over),
  content type ``application/json``. **Metadata** is a JSON object with the ESDB
  conventions ``$correlationId`` / ``$causationId`` and our envelope under
  ``"orchestrail"``: id, actor, correlation and causation ids, occurred/recorded times,
  prev_hash, hash, the caller's metadata, and ``base`` (the ESDB revision of our version
  0: a soft-deleted stream that is written again continues its ESDB revisions, while our
  versions restart at 0).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from eventstore.canonical import parse_ts
from eventstore.errors import ConfigError, StoreCorrupted
from eventstore.model import Query, RecordedEvent
from eventstore.redact import mask_url

ENVELOPE = "orchestrail"
RESERVED_PREFIX = "_orchestrail-"
ID_NAMESPACE = uuid.UUID("6f1c2b7e-4f55-5b0c-9d8e-0a7e5d1c0b61")
#: our own query parameters, removed before the URL reaches esdbclient (which rejects them)
OWN_PARAMS = ("namespace", "connecttimeout", "timeout")
SCHEMES = {"esdb": "esdb", "kurrentdb": "esdb", "esdb+discover": "esdb+discover",
           "kurrentdb+discover": "esdb+discover", "kurrent": "esdb"}


@dataclass(frozen=True)
class Target:
    """A parsed ``esdb://`` / ``kurrentdb://`` URL."""

    client_uri: str  # what esdbclient gets
    masked: str  # for messages and logs
    namespace: str
    connect_timeout: float
    timeout: float

    @classmethod
    def parse(cls, url: str) -> Target:
        masked = mask_url(url)
        parts = urlsplit(url)
        scheme = SCHEMES.get(parts.scheme.lower())
        if scheme is None or not parts.netloc:
            raise ConfigError(
                f"store URL {masked!r}: expected esdb://host:2113?Tls=false or kurrentdb://..."
            )
        own: dict[str, str] = {}
        rest: list[tuple[str, str]] = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            (own.__setitem__(key.lower(), value) if key.lower() in OWN_PARAMS
             else rest.append((key, value)))
        namespace = own.get("namespace", "")
        if namespace and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:@/+=-]{0,60}", namespace):
            raise ConfigError(f"store URL {masked!r}: invalid namespace {namespace!r}")

        def seconds(name: str, default: float) -> float:
            try:
                value = float(own.get(name, default))
            except ValueError:
                raise ConfigError(f"store URL {masked!r}: {name} must be seconds") from None
            if value <= 0:
                raise ConfigError(f"store URL {masked!r}: {name} must be > 0")
            return value

        uri = urlunsplit((scheme, parts.netloc, parts.path, urlencode(rest), ""))
        return cls(uri, masked, namespace, seconds("connecttimeout", 5.0),
                   seconds("timeout", 30.0))


class Names:
    """Our stream names <-> ESDB stream names, inside one namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def to_esdb(self, stream: str) -> str:
        if stream.startswith("$"):
            return self.namespace + RESERVED_PREFIX + stream[1:]
        return self.namespace + stream

    def from_esdb(self, name: str) -> str | None:
        """Our name for an ESDB stream, or None when it is outside this namespace."""
        if not name.startswith(self.namespace) or name.startswith("$"):
            return None
        rest = name[len(self.namespace):]
        if rest.startswith(RESERVED_PREFIX):
            return "$" + rest[len(RESERVED_PREFIX):]
        return rest


def esdb_id(event_id: str) -> uuid.UUID:
    """The ESDB event id for one of ours: itself when it is a UUID, else a uuid5 of it."""
    try:
        parsed = uuid.UUID(event_id)
    except ValueError:
        return uuid.uuid5(ID_NAMESPACE, event_id)
    return parsed if str(parsed) == event_id else uuid.uuid5(ID_NAMESPACE, event_id)


def encode_metadata(row: Any, base: int) -> bytes:
    """The ESDB metadata of an ``eventstore.append.Row`` (see the module docstring)."""
    meta: dict[str, Any] = {}
    if row.correlation_id is not None:
        meta["$correlationId"] = row.correlation_id
    if row.causation_id is not None:
        meta["$causationId"] = row.causation_id
    meta[ENVELOPE] = {
        "id": row.id,
        "base": base,
        "actor": row.actor,
        "correlation_id": row.correlation_id,
        "causation_id": row.causation_id,
        "occurred_at": row.occurred_at_text,
        "recorded_at": row.recorded_at_text,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
        "metadata": row.metadata,
    }
    return json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode(raw: Any, names: Names) -> RecordedEvent | None:
    """One of our events from an esdbclient ``RecordedEvent``; None for anyone else's."""
    stream = names.from_esdb(raw.stream_name)
    if stream is None or not raw.metadata or raw.type.startswith("$"):
        return None
    try:
        meta = json.loads(raw.metadata)
    except ValueError:
        return None  # not JSON: not ours
    env = meta.get(ENVELOPE) if isinstance(meta, dict) else None
    if not isinstance(env, dict):
        return None
    where = f"ESDB stream {raw.stream_name!r} revision {raw.stream_position}"
    if raw.commit_position is None:
        raise StoreCorrupted(f"{where} has no commit position: EventStoreDB 22.10+ is needed")
    try:
        data = json.loads(raw.data)
        if not isinstance(data, dict):
            raise ValueError("data is not a JSON object")
        return RecordedEvent.model_construct(
            id=env["id"],
            stream=stream,
            version=raw.stream_position - int(env["base"]),
            position=raw.commit_position,
            type=raw.type,
            data=data,
            metadata=env["metadata"],
            actor=env["actor"],
            correlation_id=env["correlation_id"],
            causation_id=env["causation_id"],
            occurred_at=parse_ts(env["occurred_at"]),
            recorded_at=parse_ts(env["recorded_at"]),
            prev_hash=env["prev_hash"],
            hash=env["hash"],
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise StoreCorrupted(f"{where} (position {raw.commit_position}): unreadable "
                             f"orchestrail event: {exc}") from None


def _esc(text: str) -> str:
    """Escape for both Python's and .NET's regex dialects: every non-word char escaped."""
    return "".join(c if c.isalnum() or c == "_" else "\\" + c for c in text)


def server_filter(query: Query, names: Names) -> dict[str, Any]:
    """The ``read_all``/``subscribe_to_all`` filter arguments the server can apply.

    ESDB filters on ONE of event type or stream name per request (a regex). Stream
    filters win when the query (or the namespace) names streams; else a type filter;
    else the default, which drops ESDB's own ``$`` system events. Everything else
    (actors, correlation, time, and whichever of types/streams the server did not
    filter) is applied client-side with ``Query.matches``.
    """
    if query.stream is not None:
        pattern = _esc(names.to_esdb(query.stream))
    elif query.stream_prefix is not None:
        pattern = _esc(names.namespace + query.stream_prefix) + ".*"
    elif names.namespace:
        pattern = _esc(names.namespace) + ".*"
    else:
        pattern = ""
    if pattern:
        return {"filter_include": (f"(?:{pattern})",), "filter_by_stream_name": True}
    if query.types is not None and "*" not in query.types:
        alts = [_esc(t[:-1]) + ".*" if t.endswith(".*") else _esc(t) for t in query.types]
        return {"filter_include": ("(?:" + "|".join(alts) + ")",)}
    return {}


def namespace_filter(names: Names) -> dict[str, Any]:
    """The filter for "every event of this store" (head position, wake-ups, id index)."""
    return server_filter(Query(), names)
