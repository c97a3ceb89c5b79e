"""Exceptions raised by the store. Every message names what was wrong and where."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error the event store raises on purpose."""


class ConfigError(StoreError):
    """A configuration file, environment variable or store URL is invalid."""


class InvalidEvent(StoreError, ValueError):
    """An event, stream name or query breaks the rules; nothing was written."""


class WrongExpectedVersion(StoreError):
    """The stream was not at the version the caller expected; nothing was written."""

    def __init__(self, stream: str, expected: object, actual: int | None) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        shown = "no stream" if actual is None else f"version {actual}"
        super().__init__(f"stream {stream!r}: expected {expected}, but it is at {shown}")


class DuplicateEventId(StoreError):
    """An event id is already stored somewhere other than this exact retry's place."""

    def __init__(self, event_id: str, stream: str, version: int) -> None:
        self.event_id = event_id
        self.stream = stream
        self.version = version
        super().__init__(
            f"event id {event_id} is already stored as {stream!r} version {version}; "
            "an idempotent retry must re-append the same events to the same place"
        )


class StoreUnavailable(StoreError):
    """The backend cannot be reached or opened (server down, file locked or read-only)."""


class StoreCorrupted(StoreError):
    """Stored data cannot be read back (a damaged file or row), named by location."""


class UnsupportedOperation(StoreError):
    """The backend cannot do this (for example, subscriptions on a backend without them)."""
