"""Store URLs: parse, resolve, and open the backend they name.

Drivers are imported only for the scheme in use: ``sqlite://`` never loads psycopg, and
``memory://`` loads nothing at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from eventstore.errors import ConfigError
from eventstore.redact import Redactor, mask_url

if TYPE_CHECKING:
    from eventstore.base import EventStore
    from eventstore.config import Config

SCHEMES = ("sqlite", "file", "memory", "postgresql", "postgres", "esdb", "kurrentdb")


def _local_path(url: str, root: Path | None) -> Path:
    """``sqlite:///rel/x.db`` is relative; ``sqlite:////abs/x.db`` is absolute (SQLAlchemy)."""
    rest = url.split("://", 1)[1]
    if rest.startswith("/"):
        rest = rest[1:]
    rest = rest.split("?", 1)[0]
    if not rest:
        raise ConfigError(f"store URL {url!r} names no path")
    path = Path(rest)
    if not path.is_absolute():
        path = (root or Path.cwd()) / path
    return path


def query_params(url: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}


async def open_store(
    url: str | None = None,
    *,
    config: Config | None = None,
    redactor: Redactor | None = None,
    create: bool = True,
) -> EventStore:
    """Open the store a URL names (default: the configured one).

    ``create=False`` refuses to create a missing local store, for read-only commands.
    """
    if config is None:
        from eventstore.config import load_config

        config = load_config()
    if url is None:
        url = config.store_url()
    if redactor is None:
        redactor = Redactor(config.redact.patterns, enabled=config.redact.enabled)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ConfigError(
            f"store URL {mask_url(url)!r}: unknown scheme {scheme or '(none)'!r}; use one of "
            "sqlite:///path.db, file:///dir, postgresql://..., esdb://host:2113, memory://"
        )
    params = query_params(url)
    if scheme == "memory":
        from eventstore.backends.memory import MemoryStore, named_memory_store

        name = url.split("://", 1)[1].split("?", 1)[0]
        if name:
            return named_memory_store(name, redactor=redactor)
        return MemoryStore(redactor=redactor)
    if scheme == "sqlite":
        from eventstore.backends.sqlite import SQLiteStore

        return await SQLiteStore.open(
            _local_path(url, config.root), redactor=redactor, create=create, params=params
        )
    if scheme == "file":
        from eventstore.backends.jsonl import JsonlStore

        fsync = params.get("fsync", config.store.fsync)
        return await JsonlStore.open(
            _local_path(url, config.root), redactor=redactor, create=create, fsync=fsync
        )
    if scheme in ("postgresql", "postgres"):
        try:
            from eventstore.backends.postgres import PostgresStore
        except ImportError as exc:
            raise ConfigError(
                f"store URL {mask_url(url)!r} needs the PostgreSQL driver: "
                f"pip install 'orchestrail[postgres]' ({exc})"
            ) from None
        return await PostgresStore.open(url, redactor=redactor, create=create)
    try:
        from eventstore.backends.esdb import EsdbStore
    except ImportError as exc:
        raise ConfigError(
            f"store URL {mask_url(url)!r} needs the EventStoreDB client: "
            f"pip install 'orchestrail[esdb]' ({exc})"
        ) from None
    return await EsdbStore.open(url, redactor=redactor, create=create)
