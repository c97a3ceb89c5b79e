"""The hook spool: where hook input waits while the store cannot take it.

``<root>/.orchestrail/hook-spool.jsonl``, one line per invocation: ``{"key",
"received_at", "raw"}`` (``raw`` is stdin as text; undecodable bytes survive as
surrogate escapes). Appended under an ``flock`` and fsynced, so a line that was spooled
survives a crash. Delivery takes the whole file by renaming it to
``hook-spool.<uuid7>.flushing`` (under the same lock, so no line is lost between read
and truncate), delivers the taken files oldest first and deletes each only after its
transaction committed. A crash in between leaves the file to be delivered again: the
event ids derive from each line's key, so the second delivery writes nothing twice.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from eventstore.canonical import uuid7
from orchestrator.hook.mapping import derived_id
from orchestrator.hook.target import SPOOL_NAME

LOCK_NAME = "hook-spool.lock"
FLUSH_LOCK_NAME = "hook-spool.flush.lock"
TAKEN_GLOB = "hook-spool.*.flushing"


@contextmanager
def _locked(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def pending(spool_dir: Path) -> bool:
    """Cheap: one stat, plus a listing only when the directory has leftovers."""
    if (spool_dir / SPOOL_NAME).exists():
        return True
    try:
        return any(spool_dir.glob(TAKEN_GLOB))
    except OSError:
        return False


def append(spool_dir: Path, raw: bytes, key: str, received_at: str) -> None:
    spool_dir.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"key": key, "received_at": received_at,
                       "raw": raw.decode("utf-8", errors="surrogateescape")}) + "\n"
    with _locked(spool_dir / LOCK_NAME):
        fd = os.open(spool_dir / SPOOL_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)


def take(spool_dir: Path) -> list[Path]:
    """Move the live spool aside and return every taken file, oldest first."""
    spool = spool_dir / SPOOL_NAME
    with _locked(spool_dir / LOCK_NAME):
        if spool.exists():
            spool.rename(spool_dir / f"hook-spool.{uuid7()}.flushing")
    return sorted(spool_dir.glob(TAKEN_GLOB))


@contextmanager
def flushing(spool_dir: Path) -> Iterator[bool]:
    """One flusher at a time; others go on (their lines stay for the running flusher)."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    with _locked(spool_dir / FLUSH_LOCK_NAME, blocking=False) as got:
        yield got


def read(path: Path) -> list[tuple[bytes, str, str]]:
    """(raw, key, received_at) per line. A torn line (crash mid-write) keeps its bytes and
    gets a key from the file and line number, so it is recorded once as an error."""
    out: list[tuple[bytes, str, str]] = []
    for n, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            out.append((str(rec["raw"]).encode("utf-8", errors="surrogateescape"),
                        str(rec["key"]), str(rec["received_at"])))
        except (ValueError, KeyError, TypeError):
            from datetime import UTC, datetime

            from eventstore.canonical import format_ts

            out.append((b"\x00spool line unreadable: " + line,
                        derived_id("spool", path.name, str(n)), format_ts(datetime.now(UTC))))
    return out
