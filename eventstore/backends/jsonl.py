"""``file:///dir``: the event log as greppable, git-friendly JSONL segments.

The segments are the source of truth; ``index.db`` (see ``jsonl_index``) is a cache that
makes queries fast and is rebuilt from the segments whenever it is missing, corrupt or
behind. How the pieces keep each other honest:

Writers (any number of OS processes, e.g. Claude Code hooks) serialize on ``flock`` of
``dir/lock``. Under the lock a writer first reconciles the index with the files (a crashed
writer may have left a committed batch unindexed, or an incomplete tail), then plans the
append (``eventstore.append``), writes every line of the batch with one ``write()`` on
an ``O_APPEND`` descriptor, fsyncs per policy, and only then records the lines in the
index. Appends waiting in one process are committed together (one write, one fsync,
one index transaction: group commit), each still its own atomic batch.

Crash safety: every line carries ``"batch":[i,n]``. A batch is committed when its last
line and newline are in the file. Bytes after the last committed batch (a torn line, part
of a batch) were never acknowledged; the next lock holder truncates them and logs a
warning naming the file and offset. Readers never take the lock: they only follow the
index, which never points past a committed batch, so they ignore such a tail. A damaged
line anywhere else is ``StoreCorrupted`` naming ``file:line``, never skipped.

fsync policies: ``always`` (fdatasync before the append returns: survives power loss),
``batch`` (at most every 100 ms and on close: a power cut may lose the last 100 ms),
``never`` (the OS decides: survives a killed process, not a power cut). Every policy
survives SIGKILL, because the data is in the page cache once ``write()`` returns.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import structlog

from eventstore.append import Existing, Head, Row, plan_append, result_of
from eventstore.backends import jsonl_layout as layout
from eventstore.backends.jsonl_format import (
    SEGMENT_RE,
    IndexRow,
    ScanResult,
    decode_event,
    encode_line,
    scan,
    segment_name,
)
from eventstore.backends.jsonl_index import (
    Index,
    IndexBroken,
    Located,
    SegmentRecord,
    connect,
)
from eventstore.base import EventStore
from eventstore.canonical import parse_ts
from eventstore.errors import StoreCorrupted, StoreError, StoreUnavailable
from eventstore.model import (
    ANY,
    AppendResult,
    ExpectedVersion,
    NewEvent,
    Query,
    RecordedEvent,
    StreamInfo,
)
from eventstore.redact import Redactor
from eventstore.retention import RETENTION_STREAM


def _log() -> Any:
    """A fresh logger each time: warnings are rare, and this honours the config of the
    moment (a cached module-level logger would ignore later ``structlog.configure``).

    Unconfigured structlog prints to stdout, which belongs to the program's output (hook
    replies, ``events query``); until someone configures it, warnings go to stderr.
    """
    if structlog.is_configured():
        return structlog.get_logger("eventstore.jsonl")
    return structlog.wrap_logger(
        structlog.PrintLogger(sys.stderr),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
    )


FSYNC_POLICIES = ("always", "batch", "never")
T = TypeVar("T")

#: Reads coalesce lines closer than this into one pread.
_READ_GAP = 64 * 1024
_READ_BLOCK = 4 * 1024 * 1024


class _Stale(Exception):
    """The index pointed at a line that is not there any more (a segment was rewritten)."""


@dataclass(slots=True)
class _Pending:
    stream: str
    events: Sequence[NewEvent]
    expected: ExpectedVersion
    future: asyncio.Future[AppendResult]


@dataclass(slots=True)
class _Writer:
    """The open ``O_APPEND`` descriptor of the last segment."""

    seq: int
    fd: int
    ino: int


@dataclass(slots=True)
class _Group:
    lines: list[bytes] = field(default_factory=list)
    rows: list[tuple[Row, int]] = field(default_factory=list)  # (row, position)
    outcomes: list[AppendResult | StoreError] = field(default_factory=list)



class JsonlStore(EventStore):
    """JSONL segments plus a rebuildable SQLite index; safe for concurrent processes."""

    gapless_positions: ClassVar[bool] = True
    #: Segments roll over once they would grow past this (a batch never spans two).
    SEGMENT_BYTES: ClassVar[int] = 64 * 1024 * 1024
    #: ``fsync=batch``: the longest a written line waits for fdatasync.
    BATCH_INTERVAL: ClassVar[float] = 0.1
    #: ``_wait_for_append`` checks the index this often.
    POLL_STEP: ClassVar[float] = 0.05

    def __init__(
        self,
        root: Path,
        *,
        redactor: Redactor | None,
        fsync: str,
        segment_bytes: int | None,
    ) -> None:
        super().__init__(redactor=redactor)
        self.root = root
        self.url = "file:///" + str(root)
        self.fsync = fsync
        self.segment_bytes = segment_bytes or self.SEGMENT_BYTES
        self.segments_dir = root / layout.SEGMENTS
        self.index_path = root / layout.INDEX
        self._lock_fd = -1
        self._w: Index | None = None  # writer connection: worker threads, under the lock
        self._r: Index | None = None  # reader connection: the event loop thread
        self._index_ino = 0
        self._r_ino = 0
        self._writer: _Writer | None = None
        self._queue: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._io_lock = asyncio.Lock()
        self._dirty = False
        self._last_sync = 0.0
        self._sync_timer: asyncio.TimerHandle | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._closed = False

    # ---- opening --------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        redactor: Redactor | None = None,
        create: bool = True,
        fsync: str = "always",
        segment_bytes: int | None = None,
    ) -> JsonlStore:
        """Open (or create) the store in directory ``path`` and reconcile its index."""
        if fsync not in FSYNC_POLICIES:
            from eventstore.errors import ConfigError

            raise ConfigError(
                f"file:// store {path}: fsync={fsync!r} is not one of {', '.join(FSYNC_POLICIES)}"
            )
        if segment_bytes is not None and segment_bytes < 1:
            raise ValueError("segment_bytes must be positive")

        def build() -> JsonlStore:
            store = cls(Path(path).absolute(), redactor=redactor, fsync=fsync,
                        segment_bytes=segment_bytes)
            try:
                store._open_sync(create)
            except BaseException:
                store._release()
                raise
            return store

        return await asyncio.to_thread(build)

    def _open_sync(self, create: bool) -> None:
        layout.prepare(self.root, create=create)
        try:
            self._lock_fd = os.open(self.root / layout.LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreUnavailable(
                f"{self.root / layout.LOCK}: cannot open the writer lock: {exc.strerror}"
            ) from None
        with self._flock():
            layout.initialize(self.root)
            for name in os.listdir(self.segments_dir):
                if name.startswith(".") and name.endswith(".tmp"):
                    os.unlink(self.segments_dir / name)  # an unfinished retention rewrite
            self._open_index()
            self._sync(full=True)
        self._r = self._connect_reader()

    def _connect_reader(self) -> Index:
        try:
            conn = connect(self.index_path)
        except IndexBroken as exc:
            raise StoreUnavailable(f"{self.index_path}: cannot open the index: {exc}") from None
        self._r_ino = self._ino(self.index_path)
        return Index(conn, self.index_path)

    @staticmethod
    def _ino(path: Path) -> int:
        try:
            return os.stat(path).st_ino
        except FileNotFoundError:
            return 0

    def _open_index(self) -> None:
        """Open the writer connection; a broken index file is deleted and rebuilt."""
        try:
            conn = connect(self.index_path)
        except IndexBroken as exc:
            _log().warning("jsonl.index_rebuild", index=str(self.index_path), reason=str(exc))
            for suffix in ("", "-wal", "-shm", "-journal"):
                try:
                    os.unlink(f"{self.index_path}{suffix}")
                except FileNotFoundError:
                    pass
            try:
                conn = connect(self.index_path)
            except IndexBroken as exc2:
                raise StoreUnavailable(
                    f"{self.index_path}: cannot create the index: {exc2}"
                ) from None
        if self._w is not None:
            self._w.close()
        self._w = Index(conn, self.index_path)
        self._index_ino = self._ino(self.index_path)

    @property
    def _wi(self) -> Index:
        if self._w is None:
            raise StoreUnavailable(f"{self.root}: the store is closed")
        return self._w

    @property
    def _ri(self) -> Index:
        if self._r is None:
            raise StoreUnavailable(f"{self.root}: the store is closed")
        return self._r

    # ---- the writer lock ------------------------------------------------------------

    @contextmanager
    def _flock(self) -> Iterator[None]:
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _locked(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in this (worker) thread under the lock, after reconciling the index."""
        with self._flock():
            if self._ino(self.index_path) != self._index_ino:
                self._open_index()  # another process rebuilt a broken index
            full = self._wi.flag("dirty") is not None
            self._sync(full=full)
            return fn(*args)

    async def _run_locked(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StoreUnavailable(f"{self.root}: the store is closed")
        async with self._io_lock:
            return await asyncio.to_thread(self._locked, fn, *args)

    # ---- reconciling the index with the segments (caller holds the lock) --------------

    def _disk_segments(self) -> list[int]:
        out = []
        for name in os.listdir(self.segments_dir):
            m = SEGMENT_RE.match(name)
            if m:
                out.append(int(m.group(1)))
            elif not name.startswith("."):
                _log().warning("jsonl.foreign_file", file=str(self.segments_dir / name),
                            note="ignored: not a segment name (NNNNNNNN.jsonl)")
        return sorted(out)

    def _seg_path(self, seq: int) -> Path:
        return self.segments_dir / segment_name(seq)

    def _sync(self, *, full: bool) -> None:
        """Bring the index up to date with the segments; repair an incomplete tail.

        Quick mode (every write) looks only at the last indexed segment and any newer
        ones; full mode (open, after a retention rewrite, after a stale read) stats every
        segment and rescans those whose size or mtime moved without the index.
        """
        w = self._wi
        if not full:
            last_rec = w.last_segment()
            recs = {} if last_rec is None else {last_rec.seq: last_rec}
        else:
            recs = w.segments()
        if full or not recs:
            disk = self._disk_segments()
            gone = sorted(set(recs) - set(disk))
            appeared = [s for s in disk if s not in recs and recs and s < max(recs)]
            if gone or appeared:
                why = (f"segment {segment_name(gone[0])} is gone" if gone
                       else f"segment {segment_name(appeared[0])} appeared")
                self._rebuild(disk, why)
                return
        else:
            last = max(recs)
            disk = [last]
            nxt = last + 1
            while self._seg_path(nxt).exists():
                disk.append(nxt)
                nxt += 1
            if len(disk) == 1 and self._unchanged(recs[last]):
                return  # the common case: no transaction at all
        if not disk:
            return
        w.begin()
        try:
            changed = False
            for seq in disk:
                changed |= self._reconcile(seq, recs.get(seq), is_last=seq == disk[-1],
                                           deep=full)
            w.set_flag("dirty", None)
            w.commit()
        except BaseException:
            w.rollback()
            raise
        if changed:
            self._drop_writer()

    def _unchanged(self, rec: SegmentRecord) -> bool:
        try:
            st = os.stat(self._seg_path(rec.seq))
        except FileNotFoundError:
            return False
        return st.st_size == rec.size and st.st_mtime_ns == rec.mtime_ns

    def _rebuild(self, disk: list[int], why: str) -> None:
        w = self._wi
        _log().warning("jsonl.index_rebuild", index=str(self.index_path), reason=why)
        w.begin()
        try:
            w.clear()
            for seq in disk:
                self._reconcile(seq, None, is_last=seq == disk[-1], known=True)
            w.set_flag("dirty", None)
            w.commit()
        except BaseException:
            w.rollback()
            raise
        self._drop_writer()

    def _previous_last_position(self, seq: int) -> int:
        row = self._wi.conn.execute(
            "SELECT max(last_pos) FROM segments WHERE seq < ?", (seq,)
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def _reconcile(
        self, seq: int, rec: SegmentRecord | None, *, is_last: bool, known: bool = False,
        deep: bool = False,
    ) -> bool:
        """Index what segment ``seq`` holds beyond ``rec``; True when anything changed.

        ``known`` (rebuilds): the segment was indexed before, so damage in it is not an
        unacknowledged tail. A segment the index never saw (a writer died between
        creating it and indexing it) holds nothing acknowledged. ``deep`` (full syncs)
        also re-reads the last indexed line of an unchanged-looking segment: mtimes tick
        coarsely, and a same-size edit of the last line must not slip through.
        """
        w = self._wi
        path = self._seg_path(seq)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise StoreCorrupted(f"{path}: segment vanished while the store was open") from None
        if (rec is not None and st.st_size == rec.size and st.st_mtime_ns == rec.mtime_ns
                and (not deep or self._tail_intact(seq, rec))):
            return False
        head = w.head()
        if rec is not None and st.st_size >= rec.size and self._tail_intact(seq, rec):
            base, base_line = rec.size, rec.lines
            after = rec.last_pos if rec.last_pos is not None else self._previous_last_position(seq)
            repair_from: int | None = rec.size
            first, last = rec.first_pos, rec.last_pos
        else:
            if rec is not None:
                w.drop_segment_rows(seq)
            base, base_line = 0, 0
            after = self._previous_last_position(seq)
            repair_from = None if (rec is not None or known) else 0
            first = last = None
        with open(path, "rb") as fh:
            fh.seek(base)
            data = fh.read()
        result = scan(str(path), seq, data, base_offset=base, base_line=base_line,
                      after_position=after, committed_head=head, repair_from=repair_from)
        if result.tail is not None:
            self._cut_tail(path, result, is_last)
            st = os.stat(path)
        self._insert(path, result.rows)
        if result.rows:
            first = first if first is not None else result.rows[0].position
            last = result.rows[-1].position
        w.put_segment(SegmentRecord(seq, result.end, st.st_mtime_ns, result.lines, first, last))
        if result.rows:
            w.set_head(result.last_position)
        return True

    def _tail_intact(self, seq: int, rec: SegmentRecord) -> bool:
        """Is the last line the index knows still where it was? (Then only the tail is new.)"""
        if rec.last_pos is None:
            return rec.size == 0
        loc = self._wi.last_line_of(seq)
        if loc is None or loc.off + loc.len != rec.size:
            return False
        try:
            with open(self._seg_path(seq), "rb") as fh:
                fh.seek(loc.off)
                raw = fh.read(loc.len)
            return raw.endswith(b"\n") and decode_event(raw[:-1]).position == loc.position
        except (OSError, ValueError):
            return False

    def _cut_tail(self, path: Path, result: ScanResult, is_last: bool) -> None:
        size = os.stat(path).st_size
        if not is_last:
            raise StoreCorrupted(
                f"{path}: ends with {result.tail} at byte {result.end}, but later segments "
                "exist (a segment in the middle of the log was damaged)"
            )
        _log().warning(
            "jsonl.tail_repaired",
            file=str(path),
            offset=result.end,
            removed_bytes=size - result.end,
            found=result.tail,
            note="an append that never completed was cut off; no committed event was lost",
        )
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, result.end)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _insert(self, path: Path, rows: list[IndexRow]) -> None:
        try:
            self._wi.insert(rows)
        except sqlite3.IntegrityError as exc:
            for row in rows:  # find the offending line to name it
                clash = self._wi.conn.execute(
                    "SELECT position FROM events WHERE position = ? OR id = ? OR "
                    "(stream = ? AND version = ?)",
                    (row.position, row.id, row.stream, row.version),
                ).fetchone()
                if clash is not None:
                    raise StoreCorrupted(
                        f"{path}:{row.line}: event {row.id} ({row.stream!r} v{row.version}, "
                        f"position {row.position}) clashes with the event at position "
                        f"{clash[0]} (same position, id, or stream version)"
                    ) from None
                self._wi.insert([row])
            raise StoreCorrupted(f"{path}: cannot index: {exc}") from None

    # ---- appending ------------------------------------------------------------------

    async def _append(
        self, stream: str, events: Sequence[NewEvent], expected: ExpectedVersion
    ) -> AppendResult:
        if self._closed:
            raise StoreUnavailable(f"{self.root}: the store is closed")
        fut: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(stream, events, expected, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_queue())
        return await fut

    async def _flush_queue(self) -> None:
        """Commit everything queued, group by group (group commit)."""
        while self._queue:
            items, self._queue = self._queue, []
            try:
                outcomes = await self._run_locked(self._write_group, items)
            except BaseException as exc:
                for it in items:
                    if not it.future.done():
                        it.future.set_exception(
                            exc if isinstance(exc, Exception) else StoreUnavailable(str(exc))
                        )
                if not isinstance(exc, Exception):
                    raise
                continue
            for it, out in zip(items, outcomes, strict=True):
                if it.future.done():
                    continue
                if isinstance(out, AppendResult):
                    it.future.set_result(out)
                else:
                    it.future.set_exception(out)
            if self._dirty:
                self._schedule_batch_sync()

    def _write_group(self, items: Sequence[_Pending]) -> list[AppendResult | StoreError]:
        """Plan every queued append against the index, write them all, index them all."""
        w = self._wi
        head = w.head()  # never below the highest position indexed (set_head on every insert)
        now = datetime.now(UTC)
        group = _Group()
        heads: dict[str, Head | None] = {}
        ids: dict[str, Existing] = {}
        pos = head
        for it in items:
            try:
                found = w.find_ids([e.id for e in it.events])
                existing = {k: Existing(*v) for k, v in found.items()}
                existing.update({e.id: ids[e.id] for e in it.events if e.id in ids})
                if it.stream not in heads:
                    h = w.stream_head(it.stream)
                    heads[it.stream] = Head(*h) if h else None
                plan = plan_append(it.stream, it.events, it.expected, heads[it.stream],
                                   existing, now)
            except StoreError as exc:
                group.outcomes.append(exc)
                continue
            if isinstance(plan, AppendResult):
                group.outcomes.append(plan)
                continue
            first = pos + 1
            n = len(plan)
            for i, row in enumerate(plan):
                group.lines.append(encode_line(row, first + i, i + 1, n))
                group.rows.append((row, first + i))
                ids[row.id] = Existing(row.stream, row.version, first + i)
            pos += n
            heads[it.stream] = Head(plan[-1].version, plan[-1].hash)
            group.outcomes.append(result_of(it.stream, plan, first))
        if group.lines:
            self._write_lines(group)
        return group.outcomes

    @staticmethod
    def _max_position(idx: Index) -> int:
        row = idx.conn.execute("SELECT max(position) FROM events").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def _writer_for(self, rec: SegmentRecord | None, incoming: int) -> tuple[_Writer, int, int]:
        """The descriptor to append to, its current size and line count (rolling if full)."""
        if rec is not None and (rec.size == 0 or rec.size + incoming <= self.segment_bytes):
            seq, size, lines = rec.seq, rec.size, rec.lines
            wr = self._writer
            path = self._seg_path(seq)
            if wr is None or wr.seq != seq or wr.ino != self._ino(path):
                self._drop_writer()
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
                wr = self._writer = _Writer(seq, fd, os.fstat(fd).st_ino)
            actual = os.fstat(wr.fd).st_size
            if actual != size:
                raise StoreCorrupted(
                    f"{path}: is {actual} bytes but the index says {size}; another program "
                    "is writing to it without the lock"
                )
            return wr, size, lines
        seq = 1 if rec is None else rec.seq + 1
        self._drop_writer()
        path = self._seg_path(seq)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                     0o644)
        if self.fsync != "never":
            layout.fsync_dir(self.segments_dir)
        wr = self._writer = _Writer(seq, fd, os.fstat(fd).st_ino)
        return wr, 0, 0

    def _write_lines(self, group: _Group) -> None:
        w = self._wi
        data = b"".join(group.lines)
        rec = w.last_segment()
        wr, size, lines = self._writer_for(rec, len(data))
        path = self._seg_path(wr.seq)
        try:
            view = memoryview(data)
            done = 0
            while done < len(data):
                done += os.write(wr.fd, view[done:])
        except OSError as exc:
            try:
                os.ftruncate(wr.fd, size)  # nothing half-written
            except OSError:
                pass
            raise StoreUnavailable(f"{path}: cannot append: {exc.strerror or exc}") from None
        self._after_write(wr.fd)
        mtime = os.fstat(wr.fd).st_mtime_ns
        rows: list[IndexRow] = []
        off = size
        for (row, position), line in zip(group.rows, group.lines, strict=True):
            lines += 1
            rows.append(IndexRow(
                position, row.id, row.stream, row.version, row.type, row.actor,
                row.correlation_id, row.occurred_at_text, row.recorded_at_text, row.hash,
                wr.seq, off, len(line), lines,
            ))
            off += len(line)
        first = rec.first_pos if rec is not None and rec.seq == wr.seq else None
        if first is None:
            first = rows[0].position
        try:
            w.begin()
            w.insert(rows)
            w.put_segment(SegmentRecord(wr.seq, off, mtime, lines, first, rows[-1].position))
            w.set_head(rows[-1].position)
            w.commit()
        except sqlite3.Error as exc:
            w.rollback()
            raise StoreUnavailable(
                f"{self.index_path}: the events are stored in {path} but the index update "
                f"failed ({exc}); the next open re-indexes them"
            ) from None

    def _after_write(self, fd: int) -> None:
        if self.fsync == "always":
            os.fdatasync(fd)
        elif self.fsync == "batch":
            now = time.monotonic()
            if now - self._last_sync >= self.BATCH_INTERVAL:
                os.fdatasync(fd)
                self._last_sync = now
                self._dirty = False
            else:
                self._dirty = True

    def _schedule_batch_sync(self) -> None:
        if self._sync_timer is not None:
            return
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._sync_timer = None
            self._sync_task = loop.create_task(self._batch_sync())

        self._sync_timer = loop.call_later(self.BATCH_INTERVAL, fire)

    async def _batch_sync(self) -> None:
        async with self._io_lock:
            await asyncio.to_thread(self._sync_dirty)

    def _sync_dirty(self) -> None:
        if self._dirty and self._writer is not None:
            os.fdatasync(self._writer.fd)
        self._dirty = False
        self._last_sync = time.monotonic()

    def _drop_writer(self) -> None:
        if self._writer is not None:
            if self._dirty:
                os.fdatasync(self._writer.fd)
                self._dirty = False
            os.close(self._writer.fd)
            self._writer = None

    # ---- reading --------------------------------------------------------------------

    def _load(self, located: Sequence[Located]) -> list[RecordedEvent]:
        """Read the lines the index points at; ``_Stale`` when one is not where it said."""
        out: list[RecordedEvent] = []
        i = 0
        n = len(located)
        while i < n:
            seq = located[i].seg
            j = i
            while j < n and located[j].seg == seq:
                j += 1
            out.extend(self._load_segment(seq, located[i:j]))
            i = j
        return out

    def _load_segment(self, seq: int, located: Sequence[Located]) -> list[RecordedEvent]:
        path = self._seg_path(seq)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise _Stale(str(path)) from None
        out: list[RecordedEvent] = []
        try:
            k = 0
            n = len(located)
            while k < n:
                start = located[k].off
                end = start + located[k].len
                m = k + 1
                while (m < n and located[m].off >= end and located[m].off - end <= _READ_GAP
                       and located[m].off + located[m].len - start <= _READ_BLOCK):
                    end = located[m].off + located[m].len
                    m += 1
                buf = os.pread(fd, end - start, start)
                for loc in located[k:m]:
                    raw = buf[loc.off - start: loc.off - start + loc.len]
                    if len(raw) != loc.len or not raw.endswith(b"\n"):
                        raise _Stale(f"{path}:{loc.line}")
                    try:
                        ev = decode_event(raw[:-1])
                    except ValueError as exc:
                        raise _Stale(f"{path}:{loc.line}: {exc}") from None
                    if ev.position != loc.position:
                        raise _Stale(f"{path}:{loc.line}")
                    out.append(ev)
                k = m
        finally:
            os.close(fd)
        return out

    async def _read_located(self, find: Callable[[Index], list[Located]]) -> list[RecordedEvent]:
        located = find(self._ri)
        if not located:
            return []
        try:
            return self._load(located)
        except _Stale as first:
            # A segment was rewritten (retention) or edited since the index was read:
            # reconcile under the lock, then read once more.
            await self._run_locked(self._force_full_sync)
            self._refresh_reader()
            try:
                return self._load(find(self._ri))
            except _Stale as exc:
                raise StoreCorrupted(
                    f"{exc}: the line is not the event the index expects ({first})"
                ) from None

    def _force_full_sync(self) -> None:
        self._sync(full=True)

    def _refresh_reader(self) -> None:
        if self._ino(self.index_path) != self._r_ino:
            if self._r is not None:
                self._r.close()
            self._r = self._connect_reader()

    async def _read_page(self, query: Query, after: int, limit: int) -> list[RecordedEvent]:
        return await self._read_located(lambda idx: idx.query(query, after, limit))

    async def _read_stream_page(
        self, stream: str, from_version: int, limit: int
    ) -> list[RecordedEvent]:
        return await self._read_located(lambda idx: idx.stream_page(stream, from_version, limit))

    async def stream_version(self, stream: str) -> int | None:
        return self._ri.stream_version(stream)

    async def head_position(self) -> int:
        return max(self._ri.head(), self._max_position(self._ri))

    async def streams(self, prefix: str | None = None) -> list[StreamInfo]:
        return [
            StreamInfo(
                stream=r.stream, count=r.count, last_version=r.last_version,
                last_hash=r.last_hash, first_position=r.first_position,
                last_position=r.last_position,
                first_recorded_at=parse_ts(r.first_recorded_at),
                last_recorded_at=parse_ts(r.last_recorded_at),
            )
            for r in self._ri.streams(prefix)
        ]

    async def _wait_for_append(self, after: int, timeout: float) -> None:
        """Poll the index (cheap: one indexed max) until it moves past ``after``."""
        deadline = time.monotonic() + timeout
        while True:
            self._refresh_reader()
            if self._max_position(self._ri) > after:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(self.POLL_STEP, left))

    # ---- retention ------------------------------------------------------------------

    async def _remove_streams(self, streams: Sequence[str], record: NewEvent) -> RecordedEvent:
        """Record first (fsynced whatever the policy), then rewrite the affected segments.

        Order, and what a crash at each step leaves:
        1. the ``$retention`` record is appended and fsynced. Crash after: the record names
           streams that still exist; harmless, running retention again removes them.
        2. the index is flagged ``dirty``; every later lock holder then reconciles all
           segments, not only the last.
        3. per segment: a copy without the removed streams' lines is written to
           ``segments/.NNNNNNNN.jsonl.tmp`` and fsynced, renamed over the segment (atomic),
           the directory fsynced, then the segment's index rows are replaced in one
           transaction. Crash before the rename: the old segment is intact and the temp
           file is deleted on the next open. Crash after it: the flag forces a rescan.
        4. the flag is cleared.
        """
        result = await self._append(RETENTION_STREAM, [record], ANY)
        await self._run_locked(self._rewrite_without, set(streams))
        events = await self._read_stream_page(RETENTION_STREAM, result.last_version, 1)
        return events[0]

    def _rewrite_without(self, doomed: set[str]) -> None:
        w = self._wi
        if self._writer is not None:
            os.fdatasync(self._writer.fd)
            self._dirty = False
        seqs = w.segments_of(doomed)
        if not seqs:
            return
        w.begin()
        w.set_flag("dirty", "retention")
        w.commit()
        for seq in seqs:
            path = self._seg_path(seq)
            spans = [(off, ln) for s, off, ln in w.lines_of(seq) if s in doomed]
            with open(path, "rb") as fh:
                data = fh.read()
            parts = []
            cur = 0
            for off, ln in spans:
                parts.append(data[cur:off])
                cur = off + ln
            parts.append(data[cur:])
            tmp = self.segments_dir / f".{segment_name(seq)}.tmp"
            with open(tmp, "wb") as out:
                out.write(b"".join(parts))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
            layout.fsync_dir(self.segments_dir)
            if self._writer is not None and self._writer.seq == seq:
                self._drop_writer()
            w.begin()
            try:
                w.drop_segment_rows(seq)
                self._reconcile(seq, None, is_last=False, known=True)
                w.commit()
            except BaseException:
                w.rollback()
                raise
        w.begin()
        w.set_flag("dirty", None)
        w.commit()

    # ---- closing --------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        if self._flusher is not None and not self._flusher.done():
            await self._flusher
        if self._sync_timer is not None:
            self._sync_timer.cancel()
            self._sync_timer = None
        self._closed = True
        async with self._io_lock:
            await asyncio.to_thread(self._release)

    def _release(self) -> None:
        self._closed = True
        try:
            self._drop_writer()
        finally:
            for idx in (self._w, self._r):
                if idx is not None:
                    idx.close()
            self._w = self._r = None
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1
