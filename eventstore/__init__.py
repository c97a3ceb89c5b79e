"""orchestrail's event store: an append-only, hash-chained log with pluggable backends.

The names below are loaded on first use (PEP 562), so ``import eventstore`` is cheap and
tools that only need ``eventstore.canonical`` (the hook fast path) never import pydantic.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "open_store": "eventstore.urls",
    "EventStore": "eventstore.base",
    "NewEvent": "eventstore.model",
    "RecordedEvent": "eventstore.model",
    "AppendResult": "eventstore.model",
    "Query": "eventstore.model",
    "Page": "eventstore.model",
    "StreamInfo": "eventstore.model",
    "StreamState": "eventstore.model",
    "ANY": "eventstore.model",
    "NO_STREAM": "eventstore.model",
    "EXISTS": "eventstore.model",
    "StoreError": "eventstore.errors",
    "ConfigError": "eventstore.errors",
    "InvalidEvent": "eventstore.errors",
    "WrongExpectedVersion": "eventstore.errors",
    "DuplicateEventId": "eventstore.errors",
    "StoreUnavailable": "eventstore.errors",
    "StoreCorrupted": "eventstore.errors",
    "UnsupportedOperation": "eventstore.errors",
    "RetentionPolicy": "eventstore.retention",
    "RetentionReport": "eventstore.retention",
    "VerifyReport": "eventstore.verify",
    "Redactor": "eventstore.redact",
    "Config": "eventstore.config",
    "load_config": "eventstore.config",
}

__all__ = [
    "ANY",
    "EXISTS",
    "NO_STREAM",
    "AppendResult",
    "Config",
    "ConfigError",
    "DuplicateEventId",
    "EventStore",
    "InvalidEvent",
    "NewEvent",
    "Page",
    "Query",
    "RecordedEvent",
    "Redactor",
    "RetentionPolicy",
    "RetentionReport",
    "StoreCorrupted",
    "StoreError",
    "StoreUnavailable",
    "StreamInfo",
    "StreamState",
    "UnsupportedOperation",
    "VerifyReport",
    "WrongExpectedVersion",
    "load_config",
    "open_store",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'eventstore' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from eventstore.base import EventStore
    from eventstore.config import Config, load_config
    from eventstore.errors import (
        ConfigError,
        DuplicateEventId,
        InvalidEvent,
        StoreCorrupted,
        StoreError,
        StoreUnavailable,
        UnsupportedOperation,
        WrongExpectedVersion,
    )
    from eventstore.model import (
        ANY,
        EXISTS,
        NO_STREAM,
        AppendResult,
        NewEvent,
        Page,
        Query,
        RecordedEvent,
        StreamInfo,
        StreamState,
    )
    from eventstore.redact import Redactor
    from eventstore.retention import RetentionPolicy, RetentionReport
    from eventstore.urls import open_store
    from eventstore.verify import VerifyReport
