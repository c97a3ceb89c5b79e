"""``orchestrail events``: append, query, tail and verify events on any store."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli.common import Ctx, emit_json, fail, run_async

if TYPE_CHECKING:
    from eventstore.model import NewEvent, Query, RecordedEvent

EVENT_KEYS = {"stream", "type", "data", "actor", "correlation_id", "causation_id", "id",
              "occurred_at", "metadata", "expected_version"}


def parse_time(text: str, what: str) -> datetime:
    """ISO 8601 (``2026-11-23T10:00:00Z``) or an age such as ``15m``, ``2h``, ``7d``."""
    from eventstore.canonical import parse_ts
    from eventstore.retention import parse_duration

    try:
        return datetime.now(UTC) - parse_duration(text)
    except ValueError:
        pass
    try:
        return parse_ts(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither an ISO 8601 time nor an age like 15m, 2h, 7d", param_hint=what
        ) from None


def build_query(stream: str | None, stream_prefix: str | None, types: tuple[str, ...],
                actors: tuple[str, ...], correlation: str | None, since: str | None,
                until: str | None) -> Query:
    from pydantic import ValidationError

    from eventstore.model import Query

    try:
        return Query(
            stream=stream, stream_prefix=stream_prefix, types=types or None,
            actors=actors or None, correlation_id=correlation,
            since=parse_time(since, "--since") if since else None,
            until=parse_time(until, "--until") if until else None,
        )
    except ValidationError as exc:
        raise click.BadParameter(exc.errors()[0]["msg"]) from None


def query_options(fn: Any) -> Any:
    for opt in reversed([
        click.option("--stream", help="Exactly this stream."),
        click.option("--stream-prefix", help="Streams starting with this (e.g. session-)."),
        click.option("--type", "types", multiple=True,
                     help="Event type, exact or prefix.* (repeatable)."),
        click.option("--actor", "actors", multiple=True, help="Actor (repeatable)."),
        click.option("--correlation", "--run", "correlation", help="Correlation id (the run)."),
        click.option("--since", help="occurred_at >= this (ISO time or age like 2h)."),
        click.option("--until", help="occurred_at < this (ISO time or age like 2h)."),
    ]):
        fn = opt(fn)
    return fn


def summary(ev: RecordedEvent, width: int = 60) -> str:
    text = json.dumps(ev.data, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


def print_event(ev: RecordedEvent, as_json: bool) -> None:
    if as_json:
        click.echo(ev.to_json())
        return
    when = ev.occurred_at.strftime("%Y-%m-%d %H:%M:%S")
    click.echo(f"{ev.position:>8}  {when}  {ev.stream}@{ev.version}  {ev.type}  "
               f"{ev.actor}  {summary(ev)}")


@click.group()
def events() -> None:
    """Append, query, tail and verify events on the configured store."""


def _read_input(source: str) -> tuple[str, list[tuple[int, str]]]:
    if source == "-":
        name, text = "<stdin>", sys.stdin.read()
    else:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"{source}: cannot read: {exc}")
        name = source
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            fail(f"{name}:{exc.lineno}: invalid JSON: {exc.msg}")
        return name, [(i + 1, json.dumps(x)) for i, x in enumerate(items)]
    return name, [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def parse_events(name: str, lines: list[tuple[int, str]], default_stream: str | None,
                 defaults: dict[str, Any]) -> list[tuple[str, Any, NewEvent]]:
    """Validate every line before anything is appended: bad input writes nothing."""
    from pydantic import ValidationError

    from eventstore.canonical import stream_name_problem
    from eventstore.model import NewEvent

    out: list[tuple[str, Any, NewEvent]] = []
    for lineno, line in lines:
        where = f"{name}:{lineno}" if name != "<stdin>" else f"stdin line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            fail(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})", 2)
        if not isinstance(obj, dict):
            fail(f"{where}: each event must be a JSON object, got {type(obj).__name__}", 2)
        unknown = sorted(set(obj) - EVENT_KEYS)
        if unknown:
            fail(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: "
                 f"{', '.join(sorted(EVENT_KEYS))}", 2)
        stream = obj.pop("stream", default_stream)
        if stream is None:
            fail(f"{where}: no stream (give \"stream\" in the event or --stream)", 2)
        problem = stream_name_problem(stream)
        if problem:
            fail(f"{where}: {problem}", 2)
        expected = obj.pop("expected_version", None)
        fields = {**defaults, **obj}
        try:
            out.append((stream, expected, NewEvent(**fields)))
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"]) or "event"
            fail(f"{where}: {key}: {str(err['msg']).removeprefix('Value error, ')}", 2)
    return out


def _expected(value: Any) -> Any:
    from eventstore.model import ANY, EXISTS, NO_STREAM

    if value is None:
        return ANY
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).lower().replace("-", "_")
    table = {"any": ANY, "no_stream": NO_STREAM, "exists": EXISTS}
    if text in table:
        return table[text]
    if text.isdigit():
        return int(text)
    raise click.BadParameter(f"{value!r}: use any, no-stream, exists or a version number")


@events.command("append")
@click.option("-f", "--file", "source", default="-", show_default=True,
              help="JSONL (or a JSON array) of events; - for stdin.")
@click.option("--stream", help="Stream for events that name none.")
@click.option("--type", "etype", help="Append one event of this type (instead of reading input).")
@click.option("--data", default="{}", help="With --type: the event's data as a JSON object.")
@click.option("--actor", default=None, help="Default actor (e.g. user:alice).")
@click.option("--correlation", default=None, help="Default correlation id.")
@click.option("--expected-version", default=None,
              help="any | no-stream | exists | N (applies to the first batch of each stream).")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON lines.")
@click.pass_obj
@run_async
async def append_cmd(obj: Ctx, source: str, stream: str | None, etype: str | None, data: str,
                     actor: str | None, correlation: str | None, expected_version: str | None,
                     as_json: bool) -> None:
    """Append events. Every line is validated first; consecutive events of one stream are
    appended atomically as one batch."""
    defaults: dict[str, Any] = {}
    if actor:
        defaults["actor"] = actor
    if correlation:
        defaults["correlation_id"] = correlation
    if etype is not None:
        if stream is None:
            raise click.UsageError("--type needs --stream")
        try:
            payload = json.loads(data)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc.msg}", param_hint="--data") from None
        name, lines = "--data", [(1, json.dumps({"type": etype, "data": payload}))]
    else:
        if source == "-" and sys.stdin.isatty():
            raise click.UsageError("reading events from the terminal: pipe JSONL in, "
                                   "or use --file PATH or --type/--data")
        name, lines = _read_input(source)
    parsed = parse_events(name, lines, stream, defaults)
    if not parsed:
        fail(f"{name}: no events to append", 2)
    cli_expected = _expected(expected_version)
    batches: list[tuple[str, Any, list[NewEvent]]] = []
    for s, exp, ev in parsed:
        if batches and batches[-1][0] == s and exp is None:
            batches[-1][2].append(ev)
        else:
            batches.append((s, _expected(exp) if exp is not None else None, [ev]))
    seen: set[str] = set()
    async with await obj.open_store() as store:
        total = 0
        for s, exp, evs in batches:
            if exp is None:
                exp = cli_expected if s not in seen else _expected(None)
            seen.add(s)
            result = await store.append(s, evs, exp)
            total += len(evs)
            if as_json:
                emit_json(result.model_dump())
        if not as_json:
            click.echo(f"appended {total} event(s) in {len(batches)} batch(es) to {store.url}")


@events.command("query")
@query_options
@click.option("--after", type=int, default=None, help="Cursor: only positions after this.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--all", "read_all", is_flag=True, help="Every match, not one page.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one event each.")
@click.pass_obj
@run_async
async def query_cmd(obj: Ctx, stream: str | None, stream_prefix: str | None,
                    types: tuple[str, ...], actors: tuple[str, ...], correlation: str | None,
                    since: str | None, until: str | None, after: int | None, limit: int,
                    read_all: bool, as_json: bool) -> None:
    """Events matching every filter, in global order. Prints the next cursor on stderr."""
    query = build_query(stream, stream_prefix, types, actors, correlation, since, until)
    async with await obj.open_store(create=False) as store:
        if read_all:
            async for ev in store.read(query, after=after):
                print_event(ev, as_json)
            return
        page = await store.read_page(query, after=after, limit=limit)
        for ev in page.events:
            print_event(ev, as_json)
        if page.next_cursor is not None:
            click.echo(f"more: --after {page.next_cursor}", err=True)


@events.command("tail")
@query_options
@click.option("--after", type=int, default=None,
              help="Start after this position (default: the current head, only new events).")
@click.option("--from-start", is_flag=True, help="Replay everything first, then follow.")
@click.option("--count", type=int, default=None, help="Stop after this many events.")
@click.option("--idle-exit", type=float, default=None,
              help="Stop after this many seconds without a new event.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one event each.")
@click.pass_obj
@run_async
async def tail_cmd(obj: Ctx, stream: str | None, stream_prefix: str | None,
                   types: tuple[str, ...], actors: tuple[str, ...], correlation: str | None,
                   since: str | None, until: str | None, after: int | None, from_start: bool,
                   count: int | None, idle_exit: float | None, as_json: bool) -> None:
    """Follow the store live (Ctrl-C to stop)."""
    query = build_query(stream, stream_prefix, types, actors, correlation, since, until)
    async with await obj.open_store(create=False) as store:
        start = 0 if from_start else (after if after is not None else await store.head_position())
        seen = 0
        stream_iter = store.subscribe(query, after=start).__aiter__()
        try:
            while count is None or seen < count:
                try:
                    ev = await asyncio.wait_for(stream_iter.__anext__(), idle_exit)
                except TimeoutError:
                    return
                print_event(ev, as_json)
                sys.stdout.flush()
                seen += 1
        finally:
            await stream_iter.aclose()  # type: ignore[attr-defined]


@events.command("streams")
@click.option("--prefix", default=None, help="Only streams starting with this.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@run_async
async def streams_cmd(obj: Ctx, prefix: str | None, as_json: bool) -> None:
    """List streams with their event counts and last hashes."""
    async with await obj.open_store(create=False) as store:
        for info in await store.streams(prefix):
            if as_json:
                emit_json(info.model_dump(mode="json"))
            else:
                click.echo(f"{info.stream:<40} {info.count:>7} events  v{info.last_version}  "
                           f"last {info.last_recorded_at:%Y-%m-%d %H:%M:%S}  "
                           f"{info.last_hash[:12]}")


async def _verify(obj: Ctx, as_json: bool, expect_head: str | None) -> None:
    async with await obj.open_store(create=False) as store:
        report = await store.verify()
    problems = list(report.problems)
    if expect_head:
        pos_text, _, want_hash = expect_head.partition(":")
        if not pos_text.isdigit():
            raise click.BadParameter("use POSITION:HASH as printed by verify",
                                     param_hint="--expect-head")
        pos = int(pos_text)
        async with await obj.open_store(create=False) as store:
            page = await store.read_page(after=pos - 1, limit=1) if pos > 0 else None
        got = page.events[0] if page and page.events else None
        if got is None or got.position != pos or (want_hash and not got.hash.startswith(want_hash)):
            from eventstore.verify import Problem

            problems.append(Problem(
                kind="head-mismatch",
                message=f"the event recorded as head {expect_head} is not in the store "
                        "(the log was cut or rewritten)"))
    ok = not problems
    if as_json:
        emit_json({**report.model_dump(mode="json"), "ok": ok,
                   "problems": [p.model_dump() for p in problems]})
    else:
        if ok:
            click.echo(f"ok: {report.events} events in {report.streams} streams verified; "
                       f"{report.removed_streams_accounted} stream(s) removed by retention "
                       "accounted for")
        else:
            click.echo(f"FAILED: {len(problems)} problem(s) in {report.events} events")
            for p in problems:
                click.echo(f"  [{p.kind}] {p.message}")
        if report.head_hash:
            click.echo(f"head: {report.head_position}:{report.head_hash}")
    if not ok:
        sys.exit(1)


_verify_options = [
    click.option("--json", "as_json", is_flag=True),
    click.option("--expect-head", default=None, metavar="POSITION:HASH",
                 help="Also check that this previously printed head is still there."),
]


@click.command("verify")
@click.pass_obj
@run_async
async def verify(obj: Ctx, as_json: bool, expect_head: str | None) -> None:
    """Recompute every hash chain; exit 1 and name the first bad event if anything changed."""
    await _verify(obj, as_json, expect_head)


@events.command("verify")
@click.pass_obj
@run_async
async def events_verify(obj: Ctx, as_json: bool, expect_head: str | None) -> None:
    """Same as ``orchestrail verify``."""
    await _verify(obj, as_json, expect_head)


for _opt in reversed(_verify_options):
    _opt(verify)
    _opt(events_verify)
