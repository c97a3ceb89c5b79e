"""The contract suite on ``sqlite:///``, in-process and with several OS processes.

The tamper hooks open the file with plain ``sqlite3`` behind the store's back, drop the
append-only triggers, change the rows, and put the triggers back: exactly what someone
editing the file by hand would have to do, and what ``verify`` must then catch.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore.backends.sqlite_schema import TRIGGERS, statements
from eventstore.testing import MultiProcessContract, StoreContract
from eventstore.urls import _local_path

SWAPPED = (
    "id", "type", "actor", "correlation_id", "causation_id", "occurred_at", "recorded_at",
    "data", "metadata", "prev_hash", "hash",
)


@contextlib.contextmanager
def tampering(url: str) -> Iterator[sqlite3.Connection]:
    """A raw connection with the append-only triggers dropped for the duration."""
    conn = sqlite3.connect(str(_local_path(url, None)), isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute("DROP TRIGGER events_no_delete")
        yield conn
        for statement in statements(TRIGGERS):
            conn.execute(statement)
        conn.execute("COMMIT")
    finally:
        conn.close()


class TestSQLiteStore(StoreContract, MultiProcessContract):
    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path}/events.db"

    async def tamper_edit(self, url: str, position: int) -> None:
        with tampering(url) as conn:
            (data,) = conn.execute("SELECT data FROM events WHERE position = ?",
                                   (position,)).fetchone()
            edited = data[:-1] + (',' if data != "{}" else "") + '"x":"edited"}'
            conn.execute("UPDATE events SET data = ? WHERE position = ?", (edited, position))

    async def tamper_delete(self, url: str, position: int) -> None:
        with tampering(url) as conn:
            assert conn.execute("DELETE FROM events WHERE position = ?", (position,)).rowcount == 1

    async def tamper_swap(self, url: str, pos_a: int, pos_b: int) -> None:
        cols = ", ".join(SWAPPED)
        with tampering(url) as conn:
            a = conn.execute(f"SELECT {cols} FROM events WHERE position = ?", (pos_a,)).fetchone()
            b = conn.execute(f"SELECT {cols} FROM events WHERE position = ?", (pos_b,)).fetchone()
            sets = ", ".join(f"{c} = ?" for c in SWAPPED)
            # ids are unique: park one row's id first
            conn.execute("UPDATE events SET id = id || '-swap' WHERE position = ?", (pos_a,))
            conn.execute(f"UPDATE events SET {sets} WHERE position = ?", (*a, pos_b))
            conn.execute(f"UPDATE events SET {sets} WHERE position = ?", (*b, pos_a))
