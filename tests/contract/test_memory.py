"""The contract suite on ``memory://``, the reference backend.

Each test gets its own named store (``memory://NAME`` is shared within the process), so
the tamper hooks can reach the same instance and rewrite its private lists directly.
In-process only: no ``MultiProcessContract`` here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from eventstore.backends import memory
from eventstore.backends.memory import MemoryStore
from eventstore.model import RecordedEvent
from eventstore.testing import StoreContract


def _store(url: str) -> MemoryStore:
    return memory._NAMED[url.split("://", 1)[1]]


def _replace(store: MemoryStore, position: int, new: RecordedEvent | None) -> RecordedEvent:
    """Swap (or drop, when ``new`` is None) the event at ``position`` in every index."""
    old = next(e for e in store._log if e.position == position)
    events = store._streams[old.stream]
    i, j = store._log.index(old), events.index(old)
    if new is None:
        del store._log[i], events[j]
    else:
        store._log[i] = events[j] = new
    store._positions = [e.position for e in store._log]
    return old


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store_url(self) -> Iterator[str]:
        name = f"contract-{uuid.uuid4().hex}"
        yield f"memory://{name}"
        memory._NAMED.pop(name, None)

    async def tamper_edit(self, url: str, position: int) -> None:
        store = _store(url)
        old = next(e for e in store._log if e.position == position)
        _replace(store, position, old.model_copy(update={"data": {**old.data, "x": "edited"}}))

    async def tamper_delete(self, url: str, position: int) -> None:
        _replace(_store(url), position, None)

    async def tamper_swap(self, url: str, pos_a: int, pos_b: int) -> None:
        store = _store(url)
        a = next(e for e in store._log if e.position == pos_a)
        b = next(e for e in store._log if e.position == pos_b)
        keep_a = {"position": a.position, "version": a.version}
        keep_b = {"position": b.position, "version": b.version}
        _replace(store, pos_a, b.model_copy(update=keep_a))
        _replace(store, pos_b, a.model_copy(update=keep_b))
