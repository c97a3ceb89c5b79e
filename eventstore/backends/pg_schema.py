"""PostgreSQL store: where to connect, and the versioned schema migrations.

Migrations are the numbered ``pg_migrations/NNNN_name.sql`` files, applied in order, each in
the same transaction as its row in ``orchestrail_schema_migrations`` (version, name, sha256
of the file). Why checksums: migration files are append-only; a database whose recorded
history differs from the shipped files was built by other code, and guessing is worse than
a clear error. Why an advisory lock: many processes (hooks, workers) open the store at
once, and only one of them may run the DDL; the others wait and then find it done.

Only ``eventstore.backends.postgres`` imports this module, so psycopg is loaded only for
``postgresql://`` URLs.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg

from eventstore.errors import ConfigError, StoreUnavailable
from eventstore.redact import mask_url

MIGRATIONS_TABLE = "orchestrail_schema_migrations"
EVENTS_TABLE = "orchestrail_events"
HEAD_TABLE = "orchestrail_head"
#: URL query parameters this backend reads itself; every other one goes to libpq.
OWN_PARAMS = ("schema", "pool_min", "pool_max")
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
DEFAULT_CONNECT_TIMEOUT = 10


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed ``postgresql://`` URL: the libpq part, and this backend's own options."""

    url: str
    masked: str
    conninfo: str
    schema: str | None
    pool_min: int
    pool_max: int
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str) -> Target:
        masked = mask_url(url)
        parts = urlsplit(url)
        params = parse_qsl(parts.query, keep_blank_values=True)
        own = {k: v for k, v in params if k in OWN_PARAMS}
        rest = [(k, v) for k, v in params if k not in OWN_PARAMS and k != "options"]
        user_options = " ".join(v for k, v in params if k == "options")
        schema = own.get("schema") or None
        if schema is not None and not _SCHEMA_RE.match(schema):
            raise ConfigError(
                f"store URL {masked!r}: schema {schema!r} must be 1-63 lowercase letters, "
                "digits and _, starting with a letter or _"
            )
        try:
            pool_min = int(own.get("pool_min", "1"))
            pool_max = int(own.get("pool_max", "10"))
        except ValueError:
            raise ConfigError(f"store URL {masked!r}: pool_min/pool_max must be integers") from None
        if not 0 <= pool_min <= pool_max or pool_max < 1:
            raise ConfigError(
                f"store URL {masked!r}: need 0 <= pool_min <= pool_max and pool_max >= 1"
            )
        # Session settings ride on the startup packet (no extra round trip): UTC so
        # timestamps come back as UTC datetimes, and the store's schema first on the path.
        options = [user_options] if user_options else []
        options.append("-c TimeZone=UTC")
        if schema is not None:
            options.append(f"-c search_path={schema}")
        kwargs: dict[str, Any] = {"options": " ".join(options)}
        if not any(k == "connect_timeout" for k, _ in rest):
            kwargs["connect_timeout"] = DEFAULT_CONNECT_TIMEOUT
        scheme = "postgresql"
        conninfo = urlunsplit((scheme, parts.netloc, parts.path, urlencode(rest), ""))
        return cls(url=url, masked=masked, conninfo=conninfo, schema=schema,
                   pool_min=pool_min, pool_max=pool_max, kwargs=kwargs)


def one_line(exc: BaseException) -> str:
    """libpq errors span lines (a hint on the second); a CLI error should be one line."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def unavailable(target: Target, what: str, exc: BaseException) -> StoreUnavailable:
    detail = mask_url(one_line(exc))
    hint = ""
    low = detail.lower()
    if "does not exist" in low and "database" in low:
        hint = " (create it first, e.g. `createdb`, or fix the database name in the URL)"
    elif "password authentication failed" in low or "no password supplied" in low:
        hint = " (check the user and password in the URL or PGPASSWORD / ~/.pgpass)"
    elif "connection refused" in low or "timeout expired" in low or "could not translate" in low:
        hint = " (is the server running and reachable at that host and port?)"
    return StoreUnavailable(f"PostgreSQL store {target.masked}: {what}: {detail}{hint}")


async def connect(target: Target, *, autocommit: bool = True) -> psycopg.AsyncConnection[Any]:
    """One connection, with libpq's own error turned into a one-line ``StoreUnavailable``."""
    try:
        return await psycopg.AsyncConnection.connect(
            target.conninfo, autocommit=autocommit, **target.kwargs
        )
    except psycopg.Error as exc:
        raise unavailable(target, "cannot connect", exc) from None


# ---- migrations -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def known_migrations() -> list[Migration]:
    """The migration files shipped with this code, in version order."""
    folder = resources.files("eventstore.backends.pg_migrations")
    out = []
    for entry in folder.iterdir():
        m = _FILE_RE.match(entry.name)
        if m:
            out.append(Migration(int(m.group(1)), entry.name[:-4], entry.read_text("utf-8")))
    out.sort(key=lambda m: m.version)
    for i, mig in enumerate(out, start=1):
        if mig.version != i:
            raise RuntimeError(f"pg_migrations: expected version {i:04d}, found {mig.name}")
    return out


def latest_version() -> int:
    return known_migrations()[-1].version


async def current_schema(conn: psycopg.AsyncConnection[Any], target: Target) -> str:
    if target.schema is not None:
        return target.schema
    cur = await conn.execute("SELECT current_schema()")
    row = await cur.fetchone()
    if row is None or row[0] is None:
        raise StoreUnavailable(
            f"PostgreSQL store {target.masked}: no schema on the search_path; add "
            "?schema=NAME to the URL"
        )
    return str(row[0])


async def applied_migrations(conn: psycopg.AsyncConnection[Any]) -> list[tuple[int, str, str]]:
    """(version, name, checksum) rows, or [] when the schema has never been migrated."""
    cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (MIGRATIONS_TABLE,))
    row = await cur.fetchone()
    if row is None or not row[0]:
        return []
    cur = await conn.execute(
        f"SELECT version, name, checksum FROM {MIGRATIONS_TABLE} ORDER BY version"
    )
    return [(int(v), str(n), str(c)) for v, n, c in await cur.fetchall()]


def check_history(target: Target, applied: list[tuple[int, str, str]]) -> list[Migration]:
    """The pending migrations; raises when the database's history is not this code's."""
    known = known_migrations()
    by_version = {m.version: m for m in known}
    latest = known[-1]
    for version, name, checksum in applied:
        mine = by_version.get(version)
        if mine is None:
            newest = applied[-1]
            raise StoreUnavailable(
                f"PostgreSQL store {target.masked}: the database schema is at version "
                f"{newest[0]} ({newest[1]}), newer than this orchestrail knows (up to "
                f"{latest.version}, {latest.name}); upgrade orchestrail"
            )
        if mine.checksum != checksum or mine.name != name:
            raise StoreUnavailable(
                f"PostgreSQL store {target.masked}: migration {version} in the database "
                f"({name}) differs from the file this orchestrail ships ({mine.name}); "
                "migration files are append-only, so this database was built by other code"
            )
    done = {v for v, _, _ in applied}
    return [m for m in known if m.version not in done]


def lock_key(schema: str) -> int:
    """A stable signed 64-bit advisory-lock key per schema (hashtext differs by version)."""
    digest = hashlib.sha256(f"orchestrail.migrate:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def apply_pending(conn: psycopg.AsyncConnection[Any], target: Target) -> list[str]:
    """Apply every pending migration in one transaction, under the schema's advisory lock."""
    schema = await current_schema(conn, target)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(schema),))
        if target.schema is not None:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{target.schema}"')
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        pending = check_history(target, await applied_migrations(conn))
        for m in pending:
            # bytes: a whole file of statements goes through the simple query protocol
            await conn.execute(m.sql.encode("utf-8"))
            await conn.execute(
                f"INSERT INTO {MIGRATIONS_TABLE} (version, name, checksum) VALUES (%s, %s, %s)",
                (m.version, m.name, m.checksum),
            )
    return [m.name for m in pending]


async def ensure_schema(
    conn: psycopg.AsyncConnection[Any], target: Target, *, create: bool
) -> list[str]:
    """Check (and with ``create``, bring up to date) the store's schema; return applied names.

    The common case, an up-to-date schema, costs two small queries and takes no lock.
    """
    enc = await conn.execute("SHOW server_encoding")
    row = await enc.fetchone()
    if row is None or str(row[0]).upper() not in ("UTF8", "UTF-8"):
        raise StoreUnavailable(
            f"PostgreSQL store {target.masked}: the database encoding is {row and row[0]}; "
            "the event store needs a UTF8 database (CREATE DATABASE ... ENCODING 'UTF8')"
        )
    applied = await applied_migrations(conn)
    pending = check_history(target, applied)
    if not pending:
        return []
    if not create:
        latest = known_migrations()[-1]
        if not applied:
            raise StoreUnavailable(
                f"PostgreSQL store {target.masked} has no orchestrail schema yet (this code "
                f"needs version {latest.version}); run `orchestrail store migrate URL` or "
                "open it with create"
            )
        raise StoreUnavailable(
            f"PostgreSQL store {target.masked}: the database schema is at version "
            f"{applied[-1][0]} ({applied[-1][1]}) but this orchestrail needs version "
            f"{latest.version} ({latest.name}); run `orchestrail store migrate URL`"
        )
    try:
        return await apply_pending(conn, target)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise StoreUnavailable(
            f"PostgreSQL store {target.masked}: cannot migrate the schema: {one_line(exc)} "
            "(run `orchestrail store migrate URL` as the migration role)"
        ) from None
