"""PostgreSQL test plumbing: a throwaway database per test module, a schema per test.

The server comes from ``ORCHESTRAIL_TEST_PG_URL`` (default
``postgresql://root@127.0.0.1:5432/test``). When it cannot be reached the tests FAIL with
the reason: a suite that needs a server must never pass by skipping.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from eventstore.canonical import canonical_json

PG_URL = os.environ.get("ORCHESTRAIL_TEST_PG_URL", "postgresql://root@127.0.0.1:5432/test")


def with_database(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, "", ""))


def with_schema(db_url: str, schema: str) -> str:
    return f"{db_url}?schema={schema}"


def admin_connect() -> psycopg.Connection[Any]:
    """A connection to the server's ``postgres`` database, or a test failure saying why."""
    try:
        return psycopg.connect(with_database(PG_URL, "postgres"), autocommit=True,
                               connect_timeout=5)
    except psycopg.Error as exc:
        pytest.fail(
            f"PostgreSQL is needed for these tests and is not reachable at {PG_URL} "
            f"(set ORCHESTRAIL_TEST_PG_URL, or start it: pg_ctlcluster 15 main start): "
            f"{' '.join(str(exc).split())}",
            pytrace=False,
        )


@contextmanager
def fresh_database() -> Iterator[str]:
    """CREATE a uniquely named database, yield its URL, DROP it (even with clients left)."""
    name = f"orchestrail_t_{uuid.uuid4().hex[:12]}"
    with admin_connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}" ENCODING \'UTF8\' TEMPLATE template0')
    try:
        yield with_database(PG_URL, name)
    finally:
        with admin_connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def new_schema() -> str:
    return f"t_{uuid.uuid4().hex[:16]}"


@contextmanager
def raw(url: str) -> Iterator[psycopg.Connection[Any]]:
    """A superuser connection into the store's schema with the append-only trigger off
    (``session_replication_role = replica`` skips ordinary triggers), for tampering."""
    parts = urlsplit(url)
    schema = dict(p.split("=", 1) for p in parts.query.split("&") if p).get("schema", "public")
    with psycopg.connect(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")),
                         options=f"-c search_path={schema}") as conn:
        conn.execute("SET session_replication_role = replica")
        yield conn


def tamper_edit(url: str, position: int) -> None:
    with raw(url) as conn:
        row = conn.execute("SELECT data_json FROM orchestrail_events WHERE position = %s",
                           (position,)).fetchone()
        assert row is not None, f"no event at position {position}"
        data = json.loads(row[0])
        data["x"] = "edited"
        conn.execute("UPDATE orchestrail_events SET data_json = %s WHERE position = %s",
                     (canonical_json(data), position))


def tamper_delete(url: str, position: int) -> None:
    with raw(url) as conn:
        cur = conn.execute("DELETE FROM orchestrail_events WHERE position = %s", (position,))
        assert cur.rowcount == 1


SWAPPED = ("id", "type", "actor", "correlation_id", "causation_id", "occurred_at",
           "recorded_at", "data_json", "metadata_json", "prev_hash", "hash")


def tamper_swap(url: str, pos_a: int, pos_b: int) -> None:
    cols = ", ".join(SWAPPED)
    sets = ", ".join(f"{c} = %s" for c in SWAPPED)
    with raw(url) as conn:
        a = conn.execute(f"SELECT {cols} FROM orchestrail_events WHERE position = %s",
                         (pos_a,)).fetchone()
        b = conn.execute(f"SELECT {cols} FROM orchestrail_events WHERE position = %s",
                         (pos_b,)).fetchone()
        assert a is not None and b is not None
        conn.execute("UPDATE orchestrail_events SET id = id || '-swap' WHERE position = %s",
                     (pos_a,))
        conn.execute(f"UPDATE orchestrail_events SET {sets} WHERE position = %s", (*a, pos_b))
        conn.execute(f"UPDATE orchestrail_events SET {sets} WHERE position = %s", (*b, pos_a))
