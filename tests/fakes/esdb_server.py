"""An in-process stand-in for EventStoreDB/KurrentDB, speaking its real gRPC protocol.

Why it exists: no EventStoreDB server can run on this machine, yet the ``esdb://`` backend
must be tested through the real client library (esdbclient), unmodified, over a real TCP
socket. So this module implements the server side of the ``event_store.client.streams``
gRPC service with the servicer base classes and messages generated from esdbclient's OWN
protobuf files (``esdbclient/protos/Grpc/streams_pb2_grpc.py``), on 127.0.0.1 without TLS.

It is NOT EventStoreDB. It models only what the backend relies on, as the public docs and
the esdbclient README describe it:

- streams with zero-based gapless revisions; a transaction-file-like log where every
  event has its own commit position (= prepare position), rising but NOT gapless (each
  record advances the log by its byte size), as on a real server;
- a few system events in ``$``-streams at start-up (so ``$all`` is never really empty);
- appends through ``BatchAppend`` (what esdbclient uses) and ``Append``: expected revision
  checks (any / no_stream / stream_exists / exact) answering with the real
  ``WrongExpectedVersion`` error details; idempotent appends by event id (the same ids
  right after the expected revision return the original position and write nothing);
- reads of one stream (forwards/backwards, from a revision, ``StreamNotFound``), of
  ``$all`` forwards/backwards from a position, with the server-side regex filters on
  event type or stream name (the ``filter`` option) and the ``count`` limit applied after
  filtering;
- catch-up subscriptions to ``$all`` and to a stream: confirmation, history, then live
  events as they are appended (the event AT the start position is excluded);
- stream metadata (``$$stream``) with ``$tb`` (truncate before); soft delete (``Delete``)
  writes ``$tb`` so the stream reads as not found and a new append continues the
  revisions; deleted events stay in ``$all`` until ``scavenge()`` (as on a real server);
  tombstones (``Tombstone``) refuse every later append.

Not modelled (so not verified by tests that use it): TLS, authentication and ACLs,
clustering/gossip/leader election, ``$maxAge``/``$maxCount`` enforcement, automatic
scavenging, projections (``$streams``, ``$by-category``, ...), persistent subscriptions,
link events and ``resolve_links``, checkpoints and ``caught_up`` messages, message size
limits, deadlines on the server side, and on-disk durability (everything is in memory).

The tamper helpers (``tamper_*``) edit the in-memory log behind the protocol's back, the
way someone with disk access could, so the verify tests can prove that changes show up.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
from esdbclient.protos.Grpc import shared_pb2, status_pb2, streams_pb2, streams_pb2_grpc
from google.protobuf import any_pb2, empty_pb2

_TICKS_AT_EPOCH = 0  # esdbclient reads "created" as 100 ns ticks since the Unix epoch


@dataclass
class _Record:
    stream: str
    revision: int
    position: int
    id: str
    type: str
    content_type: str
    data: bytes
    metadata: bytes
    created: int = field(default_factory=lambda: time.time_ns() // 100)
    wire: Any = field(default=None, compare=False, repr=False)  # cached ReadResp


class _Expected:
    """An expected revision as the request carried it."""

    def __init__(self, kind: str, revision: int = -1) -> None:
        self.kind = kind  # any | no_stream | exists | exact
        self.revision = revision

    @classmethod
    def of(cls, options: Any, exact_field: str) -> _Expected:
        oneof = ("expected_stream_position" if exact_field == "stream_position"
                 else "expected_stream_revision")
        which = options.WhichOneof(oneof)
        if which == exact_field:
            return cls("exact", int(getattr(options, exact_field)))
        return cls({"no_stream": "no_stream", "any": "any", "stream_exists": "exists"}[which])


class AppendRejected(Exception):
    """A failed append: ``kind`` is wrong_expected_version or stream_deleted."""

    def __init__(self, kind: str, current: int | None = None,
                 expected: _Expected | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.current = current
        self.expected = expected


class FakeEventStoreDB:
    """The server state plus a gRPC server around it. ``start()`` returns the URL."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.log: list[_Record] = []
        self.streams: dict[str, list[_Record]] = {}
        self.tombstoned: set[str] = set()
        self.end = 2_048  # the log does not start at 0 on a real server either
        self.appends = 0  # successful write transactions, for tests
        self._server: grpc.Server | None = None
        self.port = 0
        for name, type_ in (("$users", "$User"), ("$user-admin", "$UserCreated"),
                            ("$scavenges", "$scavengeIndexInitialized")):
            with self.cond:
                    self._write(name, [(str(uuid.uuid4()), type_, "application/json", b"{}", b"")])

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="fake-esdb"),
            options=[("grpc.max_receive_message_length", 64 * 1024 * 1024),
                     ("grpc.so_reuseport", 0)],
        )
        streams_pb2_grpc.add_StreamsServicer_to_server(_Streams(self), server)
        self.port = server.add_insecure_port(f"{host}:{port}")
        server.start()
        self._server = server
        return self.url

    @property
    def url(self) -> str:
        return f"esdb://127.0.0.1:{self.port}?Tls=false"

    def stop(self) -> None:
        if self._server is not None:
            with self.cond:
                self.cond.notify_all()
            self._server.stop(grace=None).wait(5)
            self._server = None

    # ---- state (call with self.cond held) --------------------------------------------------

    def _write(self, stream: str, events: Sequence[tuple[str, str, str, bytes, bytes]]
               ) -> list[_Record]:
        existing = self.streams.setdefault(stream, [])
        revision = existing[-1].revision + 1 if existing else 0
        out = []
        for i, (id_, type_, ctype, data, meta) in enumerate(events):
            rec = _Record(stream, revision + i, self.end, id_, type_, ctype, data, meta)
            self.end += 128 + len(stream) + len(type_) + len(data) + len(meta)
            out.append(rec)
        existing.extend(out)
        self.log.extend(out)
        self.appends += 1
        self.cond.notify_all()
        return out

    def truncate_before(self, stream: str) -> int:
        meta = self.streams.get("$$" + stream)
        if not meta:
            return 0
        try:
            return int(json.loads(meta[-1].data).get("$tb", 0))
        except (ValueError, TypeError, AttributeError):
            return 0

    def live(self, stream: str) -> list[_Record]:
        """The stream's readable events: those at or after its truncate-before revision."""
        events = self.streams.get(stream, [])
        tb = self.truncate_before(stream)
        return [r for r in events if r.revision >= tb] if tb else list(events)

    def last_revision(self, stream: str) -> int | None:
        """The revision of the last event ever written, deleted or not (None: never)."""
        events = self.streams.get(stream)
        return events[-1].revision if events else None

    def append(self, stream: str, expected: _Expected,
               events: Sequence[tuple[str, str, str, bytes, bytes]]) -> tuple[int, int]:
        """Returns (current revision, commit position of the last event)."""
        with self.cond:
            if stream in self.tombstoned:
                raise AppendRejected("stream_deleted")
            live = self.live(stream)
            last = self.last_revision(stream)
            current = live[-1].revision if live else None
            ids = [e[0] for e in events]
            retry = self._idempotent(stream, expected, live, ids)
            if retry is not None:
                return retry.revision, retry.position
            ok = (
                expected.kind == "any"
                or (expected.kind == "no_stream" and current is None)
                or (expected.kind == "exists" and current is not None)
                or (expected.kind == "exact" and current == expected.revision)
            )
            if not ok:
                raise AppendRejected("wrong_expected_version", current, expected)
            if not events:
                return (last if last is not None else -1), self.end
            written = self._write(stream, events)
            return written[-1].revision, written[-1].position

    @staticmethod
    def _idempotent(stream: str, expected: _Expected, live: list[_Record],
                    ids: list[str]) -> _Record | None:
        """The last event of an earlier identical append, when this one repeats it."""
        if not ids or not live:
            return None
        first_rev = live[0].revision
        if expected.kind == "exact":
            start = expected.revision + 1 - first_rev
        elif expected.kind == "no_stream":
            start = 0
        else:  # any / exists: look for the first id anywhere (best effort on a real server)
            found = [i for i, r in enumerate(live) if r.id == ids[0]]
            if not found:
                return None
            start = found[0]
        if start < 0 or start + len(ids) > len(live):
            return None
        window = live[start:start + len(ids)]
        if [r.id for r in window] == ids:
            return window[-1]
        return None

    def delete(self, stream: str, expected: _Expected, tombstone: bool) -> int:
        with self.cond:
            if stream in self.tombstoned:
                raise AppendRejected("stream_deleted")
            live = self.live(stream)
            current = live[-1].revision if live else None
            ok = (
                expected.kind == "any"
                or (expected.kind == "no_stream" and current is None)
                or (expected.kind == "exists" and current is not None)
                or (expected.kind == "exact" and current == expected.revision)
            )
            if not ok:
                raise AppendRejected("wrong_expected_version", current, expected)
            if tombstone:
                self.tombstoned.add(stream)
            last = self.last_revision(stream)
            tb = (last + 1) if last is not None else 0
            meta = json.dumps({"$tb": tb}).encode()
            rec = self._write("$$" + stream,
                              [(str(uuid.uuid4()), "$metadata", "application/json", meta, b"")])
            return rec[-1].position

    def scavenge(self) -> int:
        """Physically drop events below each stream's truncate-before; returns how many.

        As on a real server, the last event of a stream is kept (hidden by ``$tb``), so
        the stream's next revision stays known.
        """
        with self.cond:
            doomed = {id(r) for s in self.streams for r in self.streams[s][:-1]
                      if r.revision < self.truncate_before(s)}
            self.log = [r for r in self.log if id(r) not in doomed]
            for s in self.streams:
                self.streams[s] = [r for r in self.streams[s] if id(r) not in doomed]
            return len(doomed)

    # ---- tampering (raw access, bypassing the protocol) -------------------------------------

    def _at(self, position: int) -> _Record:
        return next(r for r in self.log if r.position == position)

    def _put(self, old: _Record, new: _Record | None) -> None:
        i = self.log.index(old)
        events = self.streams[old.stream]
        j = events.index(old)
        if new is None:
            del self.log[i], events[j]
        else:
            self.log[i] = events[j] = new

    def tamper_edit(self, position: int) -> None:
        with self.cond:
            old = self._at(position)
            data = json.loads(old.data)
            data["x"] = "edited"
            self._put(old, replace(old, data=json.dumps(data).encode(), wire=None))

    def tamper_delete(self, position: int) -> None:
        with self.cond:
            self._put(self._at(position), None)

    def tamper_swap(self, pos_a: int, pos_b: int) -> None:
        """Swap two events' contents, keeping each record's revision and position."""
        with self.cond:
            a, b = self._at(pos_a), self._at(pos_b)
            self._put(a, replace(b, revision=a.revision, position=a.position, wire=None))
            self._put(b, replace(a, revision=b.revision, position=b.position, wire=None))


# ---- the gRPC service ---------------------------------------------------------------------


def _read_event(rec: _Record) -> streams_pb2.ReadResp:
    if rec.wire is None:
        rec.wire = _build_read_event(rec)
    return rec.wire


def _build_read_event(rec: _Record) -> streams_pb2.ReadResp:
    event = streams_pb2.ReadResp.ReadEvent.RecordedEvent(
        id=shared_pb2.UUID(string=rec.id),
        stream_identifier=shared_pb2.StreamIdentifier(stream_name=rec.stream.encode()),
        stream_revision=rec.revision,
        prepare_position=rec.position,
        commit_position=rec.position,
        metadata={"type": rec.type, "content-type": rec.content_type,
                  "created": str(rec.created + _TICKS_AT_EPOCH)},
        custom_metadata=rec.metadata,
        data=rec.data,
    )
    return streams_pb2.ReadResp(
        event=streams_pb2.ReadResp.ReadEvent(event=event, commit_position=rec.position)
    )


def _filter(options: Any) -> Any:
    """A predicate for the request's server-side filter (regex or prefixes)."""
    if options.WhichOneof("filter_option") != "filter":
        return lambda rec: True
    f = options.filter
    by_stream = f.WhichOneof("filter") == "stream_identifier"
    expr = f.stream_identifier if by_stream else f.event_type
    regex = re.compile(expr.regex) if expr.regex else None
    prefixes = tuple(expr.prefix)

    def match(rec: _Record) -> bool:
        value = rec.stream if by_stream else rec.type
        if regex is not None and not regex.search(value):
            return False
        return not (prefixes and not value.startswith(prefixes))

    return match


class _Streams(streams_pb2_grpc.StreamsServicer):
    def __init__(self, db: FakeEventStoreDB) -> None:
        self.db = db

    # -- reads and subscriptions ---------------------------------------------------------

    def Read(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        o = request.options
        forwards = o.read_direction == streams_pb2.ReadReq.Options.Forwards
        subscribe = o.WhichOneof("count_option") == "subscription"
        limit = o.count if not subscribe else None
        if o.WhichOneof("stream_option") == "stream":
            yield from self._read_stream(o, forwards, subscribe, limit, context)
        else:
            yield from self._read_all(o, forwards, subscribe, limit, context)

    def _read_stream(self, o: Any, forwards: bool, subscribe: bool, limit: int | None,
                     context: grpc.ServicerContext) -> Iterator[Any]:
        name = o.stream.stream_identifier.stream_name.decode()
        which = o.stream.WhichOneof("revision_option")
        db = self.db
        if subscribe:
            yield streams_pb2.ReadResp(confirmation=streams_pb2.ReadResp.SubscriptionConfirmation(
                subscription_id=str(uuid.uuid4())))
            after = -1 if which == "start" else (o.stream.revision if which == "revision"
                                                 else self._end_revision(name))
            while context.is_active():
                with db.cond:
                    batch = [r for r in db.live(name) if r.revision > after]
                    if not batch:
                        db.cond.wait(0.5)
                        continue
                for rec in batch:
                    yield _read_event(rec)
                    after = rec.revision
            return
        with db.cond:
            if name in db.tombstoned:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              f"Event stream '{name}' is deleted.")
            live = db.live(name)
        if not live:
            yield streams_pb2.ReadResp(stream_not_found=streams_pb2.ReadResp.StreamNotFound(
                stream_identifier=shared_pb2.StreamIdentifier(stream_name=name.encode())))
            return
        if forwards:
            start = o.stream.revision if which == "revision" else 0
            events = [r for r in live if r.revision >= start]
        else:
            events = live[::-1]
            if which == "revision":
                events = [r for r in events if r.revision <= o.stream.revision]
        for rec in events[:limit]:
            yield _read_event(rec)

    def _end_revision(self, name: str) -> int:
        with self.db.cond:
            last = self.db.last_revision(name)
        return -1 if last is None else last

    def _read_all(self, o: Any, forwards: bool, subscribe: bool, limit: int | None,
                  context: grpc.ServicerContext) -> Iterator[Any]:
        db = self.db
        match = _filter(o)
        which = o.all.WhichOneof("all_option")
        if subscribe:
            yield streams_pb2.ReadResp(confirmation=streams_pb2.ReadResp.SubscriptionConfirmation(
                subscription_id=str(uuid.uuid4())))
            if which == "position":
                after = o.all.position.commit_position
            elif which == "end":
                with db.cond:
                    after = db.log[-1].position if db.log else -1
            else:
                after = -1
            while context.is_active():
                with db.cond:
                    batch = [r for r in db.log if r.position > after]
                    if not batch:
                        db.cond.wait(0.5)
                        continue
                for rec in batch:
                    after = rec.position
                    if match(rec):
                        yield _read_event(rec)
            return
        with db.cond:
            log = list(db.log)
        if forwards:
            start = o.all.position.commit_position if which == "position" else -1
            events: Iterator[_Record] = (r for r in log if r.position >= start)
        else:
            stop = o.all.position.commit_position if which == "position" else None
            events = (r for r in reversed(log) if stop is None or r.position < stop)
        sent = 0
        for rec in events:
            if limit is not None and sent >= limit:
                return
            if match(rec):
                sent += 1
                yield _read_event(rec)

    # -- writes -----------------------------------------------------------------------------

    def BatchAppend(self, request_iterator: Iterator[Any],
                    context: grpc.ServicerContext) -> Iterator[Any]:
        pending: dict[str, tuple[Any, list[Any]]] = {}
        for req in request_iterator:
            key = req.correlation_id.string
            if req.HasField("options"):
                pending[key] = (req.options, [])
            options, messages = pending[key]
            messages.extend(req.proposed_messages)
            if not req.is_final:
                continue
            del pending[key]
            stream = options.stream_identifier.stream_name.decode()
            expected = _Expected.of(options, "stream_position")
            resp = streams_pb2.BatchAppendResp(
                correlation_id=req.correlation_id,
                stream_identifier=options.stream_identifier,
            )
            try:
                revision, position = self.db.append(stream, expected, _proposed(messages))
            except AppendRejected as exc:
                resp.error.CopyFrom(_status(exc, stream))
            else:
                resp.success.current_revision = revision
                resp.success.position.CopyFrom(shared_pb2.AllStreamPosition(
                    commit_position=position, prepare_position=position))
            yield resp

    def Append(self, request_iterator: Iterator[Any],
               context: grpc.ServicerContext) -> Any:
        first = next(request_iterator)
        options = first.options
        messages = [r.proposed_message for r in request_iterator]
        stream = options.stream_identifier.stream_name.decode()
        expected = _Expected.of(options, "revision")
        try:
            revision, position = self.db.append(stream, expected, _proposed(messages))
        except AppendRejected as exc:
            if exc.kind == "stream_deleted":
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              f"Event stream '{stream}' is deleted.")
            wev = streams_pb2.AppendResp.WrongExpectedVersion()
            if exc.current is None:
                wev.current_no_stream.CopyFrom(shared_pb2.Empty())
            else:
                wev.current_revision = exc.current
            return streams_pb2.AppendResp(wrong_expected_version=wev)
        return streams_pb2.AppendResp(success=streams_pb2.AppendResp.Success(
            current_revision=revision,
            position=streams_pb2.AppendResp.Position(commit_position=position,
                                                     prepare_position=position)))

    def Delete(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._delete(request, context, tombstone=False)

    def Tombstone(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._delete(request, context, tombstone=True)

    def _delete(self, request: Any, context: grpc.ServicerContext, tombstone: bool) -> Any:
        options = request.options
        stream = options.stream_identifier.stream_name.decode()
        expected = _Expected.of(options, "revision")
        try:
            position = self.db.delete(stream, expected, tombstone)
        except AppendRejected as exc:
            if exc.kind == "stream_deleted":
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              f"Event stream '{stream}' is deleted.")
            actual = -1 if exc.current is None else exc.current
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          f"WrongExpectedVersion: Append failed due to WrongExpectedVersion. "
                          f"Stream: {stream}, Expected version: {expected.revision}, "
                          f"Actual version: {actual}")
        resp_type = streams_pb2.TombstoneResp if tombstone else streams_pb2.DeleteResp
        return resp_type(position=resp_type.Position(commit_position=position,
                                                     prepare_position=position))


def _proposed(messages: Sequence[Any]) -> list[tuple[str, str, str, bytes, bytes]]:
    return [
        (m.id.string, m.metadata["type"], m.metadata.get("content-type", ""),
         bytes(m.data), bytes(m.custom_metadata))
        for m in messages
    ]


def _status(exc: AppendRejected, stream: str) -> status_pb2.Status:
    detail = any_pb2.Any()
    if exc.kind == "stream_deleted":
        detail.Pack(shared_pb2.StreamDeleted(
            stream_identifier=shared_pb2.StreamIdentifier(stream_name=stream.encode())))
        return status_pb2.Status(code=9, message="Stream deleted", details=detail)
    wev = shared_pb2.WrongExpectedVersion()
    if exc.current is None:
        wev.current_no_stream.CopyFrom(empty_pb2.Empty())
    else:
        wev.current_stream_revision = exc.current
    exp = exc.expected
    if exp is not None:
        if exp.kind == "exact":
            wev.expected_stream_position = exp.revision
        elif exp.kind == "any":
            wev.expected_any.CopyFrom(empty_pb2.Empty())
        elif exp.kind == "exists":
            wev.expected_stream_exists.CopyFrom(empty_pb2.Empty())
        else:
            wev.expected_no_stream.CopyFrom(empty_pb2.Empty())
    detail.Pack(wev)
    return status_pb2.Status(code=9, message="Wrong expected version", details=detail)


def main() -> None:  # pragma: no cover - manual use: python -m tests.fakes.esdb_server
    """Run the fake on a fixed port for manual experiments (Ctrl-C stops it)."""
    import sys

    db = FakeEventStoreDB()
    url = db.start(port=int(sys.argv[1]) if len(sys.argv) > 1 else 2113)
    print(url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        db.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
