"""The JSONL store's directory: what belongs in it, and refusing what does not.

A ``file:///dir`` URL names a directory. It is ours when it holds ``store.json``; an empty
(or not yet existing) directory becomes ours; anything else is refused with one line
naming the path, so a mistyped URL never scatters segments into someone's home folder.

    dir/store.json            format marker (kept in git)
    dir/segments/NNNNNNNN.jsonl   the events, append-only (kept in git)
    dir/index.db[-wal,-shm]   sidecar index, rebuildable (ignored by git)
    dir/lock                  flock target that serializes writers (ignored by git)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from eventstore.errors import ConfigError, StoreCorrupted, StoreUnavailable

FORMAT = "orchestrail-jsonl"
FORMAT_VERSION = 1
MARKER = "store.json"
SEGMENTS = "segments"
INDEX = "index.db"
LOCK = "lock"
GITIGNORE = ".gitignore"
OURS = {MARKER, SEGMENTS, INDEX, INDEX + "-wal", INDEX + "-shm", INDEX + "-journal", LOCK}


def fsync_dir(path: Path) -> None:
    """Make a create/rename inside ``path`` durable (POSIX needs the directory synced)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prepare(path: Path, *, create: bool) -> None:
    """Check (or create) the directory before anything is opened in it."""
    if path.exists() and not path.is_dir():
        raise ConfigError(
            f"{path}: is a file, not a directory; a file:// store URL names a directory "
            "of JSONL segments"
        )
    if not path.exists():
        if not create:
            raise StoreUnavailable(f"{path}: no JSONL event store here (no such directory)")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(
                f"{path}: cannot create the store directory: {exc.strerror or exc}"
            ) from None
    if not os.access(path, os.R_OK | os.X_OK):
        raise StoreUnavailable(f"{path}: the store directory is not readable")
    try:
        names = os.listdir(path)
    except OSError as exc:
        raise StoreUnavailable(f"{path}: cannot list the store directory: {exc.strerror}") from None
    if MARKER in names:
        check_marker(path / MARKER)
    else:
        foreign = sorted(n for n in names if n not in OURS and not n.startswith("."))
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise ConfigError(
                f"{path}: not an orchestrail JSONL store (no {MARKER}, and it holds {shown}); "
                "point the file:// URL at an empty or new directory"
            )
        if not create:
            raise StoreUnavailable(f"{path}: no JSONL event store here (no {MARKER})")
    if not os.access(path, os.W_OK):
        raise StoreUnavailable(
            f"{path}: the store directory is not writable (the JSONL store writes its lock "
            "and index files there)"
        )


def check_marker(marker: Path) -> None:
    try:
        doc = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StoreCorrupted(f"{marker}: unreadable store marker: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError(f"{marker}: not an orchestrail JSONL store marker")
    if doc.get("version") != FORMAT_VERSION:
        raise ConfigError(
            f"{marker}: format version {doc.get('version')!r}; this orchestrail reads "
            f"version {FORMAT_VERSION} (upgrade orchestrail)"
        )


def initialize(path: Path) -> None:
    """Create the marker, segments folder and .gitignore (caller holds the lock)."""
    (path / SEGMENTS).mkdir(exist_ok=True)
    gitignore = path / GITIGNORE
    if not gitignore.exists():
        gitignore.write_text(f"# orchestrail: rebuildable index and lock\n{INDEX}*\n{LOCK}\n")
    marker = path / MARKER
    if marker.exists():
        check_marker(marker)
        return
    tmp = path / f".{MARKER}.tmp"
    tmp.write_text(json.dumps({"format": FORMAT, "version": FORMAT_VERSION}) + "\n")
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, marker)
    fsync_dir(path)
