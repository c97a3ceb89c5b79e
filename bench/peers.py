"""The contenders that are not our store: the eventsourcing library and the raw floors.

eventsourcing: its SQLite path as its users pay for it, i.e. domain event objects turned
into ``StoredEvent`` by its ``Mapper`` + ``JSONTranscoder`` and written by its
``SQLiteApplicationRecorder`` (WAL, one transaction per ``insert_events`` call).

Floors: what the same rows cost with nothing on top. ``raw sqlite3`` inserts our
precomputed rows (JSON text and hashes already made) into our own schema with one
``executemany`` per transaction and the same ``synchronous`` setting; ``raw file`` writes
the precomputed JSONL lines with one ``write`` + ``fsync`` per append.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from eventstore.append import Row
from eventstore.backends.sqlite_schema import INSERT_SQL, SCHEMA, statements
from eventstore.model import NewEvent

# ---- eventsourcing --------------------------------------------------------------------------


_EVENT_CLASS: Any = None


def _event_class() -> Any:
    """One class for the whole run: the library refuses a second class under one topic."""
    global _EVENT_CLASS
    if _EVENT_CLASS is not None:
        return _EVENT_CLASS
    from eventsourcing.domain import DomainEvent

    class AgentActed(DomainEvent):
        type: str
        actor: str
        correlation_id: str | None
        causation_id: str | None
        data: dict[str, Any]

    _EVENT_CLASS = AgentActed
    return AgentActed


class EventsourcingSQLite:
    """``Mapper`` + ``JSONTranscoder`` + ``SQLiteApplicationRecorder`` on one file."""

    def __init__(self, path: Path) -> None:
        from eventsourcing.persistence import (
            DatetimeAsISO,
            DecimalAsStr,
            JSONTranscoder,
            Mapper,
            UUIDAsHex,
        )
        from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

        transcoder = JSONTranscoder()
        transcoder.register(UUIDAsHex())
        transcoder.register(DecimalAsStr())
        transcoder.register(DatetimeAsISO())
        self.mapper: Any = Mapper(transcoder=transcoder)
        self.datastore = SQLiteDatastore(db_name=str(path), pool_size=10)
        self.recorder = SQLiteApplicationRecorder(self.datastore)
        self.recorder.create_table()
        self.cls = _event_class()

    def durability(self) -> str:
        """journal_mode and synchronous as the library's own writer connection has them."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("PRAGMA journal_mode")
            journal = str(curs.fetchone()[0])
            curs.execute("PRAGMA synchronous")
            value = int(curs.fetchone()[0])
        return durability_text(journal, value)

    def domain_events(self, events: list[NewEvent]) -> list[Any]:
        """The same events as the library's users would hold them (built before timing)."""
        originator = uuid.uuid4()
        return [
            self.cls(originator_id=originator, originator_version=i + 1,
                     timestamp=e.occurred_at, type=e.type, actor=e.actor,
                     correlation_id=e.correlation_id, causation_id=e.causation_id,
                     data=e.data)
            for i, e in enumerate(events)
        ]

    def insert(self, domain_events: list[Any]) -> None:
        self.recorder.insert_events([self.mapper.to_stored_event(e) for e in domain_events])

    def close(self) -> None:
        self.datastore.close()


def run_threads(n: int, target: Any, args: list[Any]) -> None:
    threads = [threading.Thread(target=target, args=(a,)) for a in args[:n]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# ---- raw floors -----------------------------------------------------------------------------


class RawSQLite:
    """Our schema, our precomputed rows, nothing else."""

    def __init__(self, path: Path, synchronous: str = "full") -> None:
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        for statement in statements(SCHEMA):
            self.conn.execute(statement)

    @staticmethod
    def params(rows: list[Row]) -> list[tuple[Any, ...]]:
        return [
            (None, r.id, r.stream, r.version, r.type, r.actor, r.correlation_id,
             r.causation_id, r.occurred_at_text, r.recorded_at_text, r.data_json,
             r.metadata_json, r.prev_hash, r.hash)
            for r in rows
        ]

    def insert(self, params: list[tuple[Any, ...]]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(INSERT_SQL, params)
        self.conn.execute("COMMIT")

    def durability(self) -> str:
        journal = self.conn.execute("PRAGMA journal_mode").fetchone()[0]
        return durability_text(journal, self.conn.execute("PRAGMA synchronous").fetchone()[0])

    def close(self) -> None:
        self.conn.close()


def durability_text(journal_mode: str, synchronous: int) -> str:
    level = {0: "off", 1: "normal", 2: "full", 3: "extra"}.get(int(synchronous), str(synchronous))
    return f"journal_mode={str(journal_mode).lower()} synchronous={level}"


class RawFile:
    """Precomputed JSONL lines, one ``write`` + ``fsync`` per append."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    @staticmethod
    def lines(rows: list[Row], first_position: int) -> bytes:
        out = []
        for i, r in enumerate(rows):
            out.append(r.recorded(first_position + i).to_json())
        return ("\n".join(out) + "\n").encode()

    def write(self, blob: bytes) -> None:
        os.write(self.fd, blob)
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


def stamp() -> str:
    return datetime.now().isoformat(timespec="seconds")
