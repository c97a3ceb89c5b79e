"""``orchestrail replay RUN``: rebuild a run from its events alone and show the tree.

Replay never executes anything (that is ``rerun``): it reads the run's events by
correlation id, in position order, through the one fold (``orchestrator.fold``), plus the
``$retention`` records so streams that retention removed show as incomplete instead of
silently missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import sys
from collections.abc import AsyncGenerator, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli.common import Ctx, fail, run_async, write_output

if TYPE_CHECKING:
    from eventstore.base import EventStore
    from eventstore.model import Query, RecordedEvent
    from orchestrator.fold import RunState


def parse_at(text: str) -> int | datetime:
    """``--at 1234`` is a position; anything else is a time (ISO or an age like 10m)."""
    from orchestrator.cli.events import parse_time

    if text.strip().isdigit():
        return int(text)
    return parse_time(text, "--at")


def run_query(run_id: str, types: tuple[str, ...]) -> Query:
    from eventstore.model import Query

    if not types:
        return Query(correlation_id=run_id)
    # the skeleton (run, tasks, sessions) is always kept so the tree has somewhere to hang
    return Query(correlation_id=run_id,
                 types=(*types, "run.*", "task.*", "agent.*"))


async def load_run(store: EventStore, run_id: str, *, at: int | datetime | None = None,
                   types: tuple[str, ...] = ()) -> RunState:
    """Read and fold one run (as of ``at``); the retention records are always applied."""
    from orchestrator.fold import RunState

    state = RunState(run_id)
    apply = state.apply
    async with contextlib.aclosing(_pages(store, run_query(run_id, types))) as pages:
        async for page in pages:
            if isinstance(at, int) and page and page[-1].position > at:
                for ev in page:
                    if ev.position <= at:
                        apply(ev)
                break
            if at is None or isinstance(at, int):
                for ev in page:
                    apply(ev)
            else:
                for ev in page:
                    if ev.occurred_at <= at:
                        apply(ev)
    return await _with_retention(store, state)


async def _with_retention(store: EventStore, state: RunState) -> RunState:
    from eventstore.retention import RETENTION_STREAM

    async for ev in store.read_stream(RETENTION_STREAM):
        state.note_retention(ev)
    return state


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a run is loaded and rendered.

    Folding creates ~10 long-lived objects per event and no cycles worth collecting; with
    the collector on, its generation-2 passes over the growing heap cost as much as the
    fold itself on 100,000 events (measured by bench/replay.py).
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


async def replay_document(store: EventStore, run_id: str, *,
                          at: int | datetime | None = None, types: tuple[str, ...] = (),
                          max_chars: int | None = 2000) -> tuple[RunState, dict[str, Any]]:
    """Load, fold and shape one run: what ``replay`` renders and the bench times."""
    with gc_paused():
        state = await load_run(store, run_id, at=at, types=types)
        return state, state.to_dict(max_chars=max_chars)


def dumps(doc: dict[str, Any]) -> str:
    """JSON text of a document (see ``dumps_bytes``)."""
    return dumps_bytes(doc).decode()


def dumps_bytes(doc: dict[str, Any]) -> bytes:
    """UTF-8 JSON of a document; orjson when installed (extra ``fast``), else the stdlib."""
    try:
        import orjson
    except ImportError:
        return json.dumps(doc, ensure_ascii=False, default=str).encode()
    encoded: bytes = orjson.dumps(doc, default=str)
    return encoded


async def _pages(store: EventStore, query: Query,
                 size: int = 2000) -> AsyncGenerator[list[RecordedEvent], None]:
    """Pages of the query, the next one read while the caller folds this one.

    The store's SQL step runs off the event loop (a driver thread or the network), so
    asking for page N+1 before folding page N overlaps the two.
    """
    after: int | None = None
    pending = asyncio.ensure_future(store.read_page(query, after=after, limit=size))
    try:
        while True:
            page = await pending
            if page.next_cursor is not None:
                pending = asyncio.ensure_future(
                    store.read_page(query, after=page.next_cursor, limit=size))
            yield page.events
            if page.next_cursor is None:
                return
    finally:
        if not pending.done():
            pending.cancel()


def filter_agent(doc: dict[str, Any], agent: str) -> dict[str, Any]:
    """Keep the sessions of one agent (and their subagents) and the tasks that hold them."""
    keep = {s["id"] for s in doc["sessions"] if s["agent"] == agent}
    grew = True
    while grew:
        more = {s["id"] for s in doc["sessions"] if s["parent_session"] in keep} - keep
        keep |= more
        grew = bool(more)
    doc["sessions"] = [s for s in doc["sessions"] if s["id"] in keep]
    doc["tasks"] = [t for t in doc["tasks"]
                    if t["agent"] == agent or set(t["sessions"]) & keep]
    for t in doc["tasks"]:
        t["sessions"] = [s for s in t["sessions"] if s in keep]
    doc["filter"] = {**doc.get("filter", {}), "agent": agent}
    return doc


def event_line(state: RunState, ev: RecordedEvent, as_json: bool) -> str:
    """One line for an event that arrived while following, naming the node it changed."""
    from eventstore.canonical import format_ts
    from orchestrator.render.text import clip

    d = ev.data if isinstance(ev.data, dict) else {}
    sid = ev.stream[8:] if ev.stream.startswith("session-") else None
    node: dict[str, Any] = {"position": ev.position, "type": ev.type, "stream": ev.stream,
                            "occurred_at": format_ts(ev.occurred_at), "session": sid}
    session = state.sessions.get(sid) if sid else None
    if session is not None and ev.type.startswith(("tool.", "approval.")):
        call = session.tool_calls.get(str(d.get("tool_use_id")))
        if call is not None:
            node["tool_call"] = call.to_dict(None if as_json else 120)
    if as_json:
        if "tool_call" not in node:
            node["data"] = d
        return json.dumps(node, ensure_ascii=False, default=str)
    who = f"{session.agent or '?'}[{sid}]" if session else ev.stream
    what = d.get("tool") or d.get("status") or d.get("title") or ""
    tail = clip(d.get("reason") or d.get("output") or d.get("input") or "", False, 80)
    return (f"{ev.position:>8}  {node['occurred_at'][11:19]}  {who}  {ev.type}  {what}  "
            f"{tail}").rstrip()


def _finished(state: RunState, ev: RecordedEvent) -> bool:
    if ev.type in ("run.finished", "run.failed"):
        return True
    if state.has_run_stream or not ev.type.startswith("agent."):
        return False
    return all(s.finished_at is not None for s in state.sessions.values())


@click.command()
@click.argument("run", required=False)
@click.option("--last", is_flag=True, help="The newest run (same as RUN = last).")
@click.option("--at", "at_text", metavar="POSITION|TIME",
              help="The state as of this global position or time (ISO or an age like 10m).")
@click.option("--agent", help="Only the sessions of this agent (and their subagents).")
@click.option("--type", "types", multiple=True, metavar="PATTERN",
              help="Only these event types, exact or prefix.* (the run/task/agent skeleton "
                   "is always kept).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown", "html"]),
              default="text", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--full", is_flag=True, help="Do not truncate inputs, outputs and texts.")
@click.option("--follow", "-f", is_flag=True,
              help="Keep printing new events of a live run until it finishes (Ctrl-C stops).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file.")
@click.pass_obj
@run_async
async def replay(obj: Ctx, run: str | None, last: bool, at_text: str | None,
                 agent: str | None, types: tuple[str, ...], fmt: str, as_json: bool,
                 full: bool, follow: bool, output: str | None) -> None:
    """Rebuild RUN from its events alone: run -> task -> session -> turn -> tool call.

    RUN is a run id, a unique prefix of one, or `last`. Nothing is executed.
    """
    from eventstore.model import Query
    from orchestrator.render import render
    from orchestrator.runs import resolve_run

    if as_json:
        fmt = "json"
    if types:
        try:
            Query(types=types)
        except ValueError as exc:
            raise click.BadParameter(str(exc).splitlines()[-1], param_hint="--type") from None
    at = parse_at(at_text) if at_text else None
    if follow and at is not None:
        raise click.UsageError("--follow and --at do not go together")
    store = await obj.open_store(create=False)
    try:
        run_id = await resolve_run(store, run, last=last)
        state, doc = await replay_document(store, run_id, at=at, types=types,
                                           max_chars=None if full else 2000)
        if state.events == 0 and not state.removed:
            fail(f"run {run_id}: no events" + (f" at or before {at_text}" if at_text else ""))
        if at is not None:
            doc["at"] = at if isinstance(at, int) else at.isoformat()
        if agent:
            doc = filter_agent(doc, agent)
        if types:
            doc["filter"] = {**doc.get("filter", {}), "types": list(types)}
        color = fmt == "text" and output is None and sys.stdout.isatty()
        with gc_paused():
            data = (dumps_bytes(doc) if fmt == "json" else
                    render(doc, fmt, color=color, full=full).encode())
        write_output(data + b"\n", output)
        if not follow or doc["run"]["status"] not in ("running", "unknown", "pending"):
            return
        async for ev in store.subscribe(run_query(run_id, types), after=state.last_position):
            state.apply(ev)
            if agent:
                sid = ev.stream[8:] if ev.stream.startswith("session-") else None
                s = state.sessions.get(sid) if sid else None
                if s is not None and s.agent != agent:
                    continue
            click.echo(event_line(state, ev, fmt == "json"))
            if _finished(state, ev):
                break
    finally:
        await store.close()
