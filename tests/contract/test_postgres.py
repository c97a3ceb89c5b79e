"""The contract suite on ``postgresql://``, against the real server on this machine.

One throwaway database per module, one schema per test (``?schema=...``), so tests are
isolated without paying for a CREATE DATABASE each. Tamper hooks edit rows with raw SQL
as superuser with ``session_replication_role = replica``, which turns the append-only
trigger off for that session only. An unreachable server fails the tests (never skips).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from eventstore.testing import MultiProcessContract, StoreContract
from tests import pg_support

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    with pg_support.fresh_database() as url:
        yield url


class TestPostgresStore(StoreContract, MultiProcessContract):
    @pytest.fixture
    def store_url(self, pg_database: str) -> str:
        return pg_support.with_schema(pg_database, pg_support.new_schema())

    async def tamper_edit(self, url: str, position: int) -> None:
        pg_support.tamper_edit(url, position)

    async def tamper_delete(self, url: str, position: int) -> None:
        pg_support.tamper_delete(url, position)

    async def tamper_swap(self, url: str, pos_a: int, pos_b: int) -> None:
        pg_support.tamper_swap(url, pos_a, pos_b)
