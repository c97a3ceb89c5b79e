"""``orchestrator.execute.supervise`` when the caller is cancelled at the same moment as
the session's own stop (a task timeout, Ctrl-C on the attempt's ``Cancel``).

The race, as the lead/review engineer saw it: ``supervise`` has cancelled the session and
waits for it to record its ``agent.failed``; the caller (the run, a lead's ``Agent``
call) is cancelled during that wait. Before the fix the wait was not shielded, so the
caller's cancellation hit the session a second time, in the middle of recording its end,
and the wait swallowed it: the caller went on as if nothing happened and the session's
``agent.failed`` could be lost. Reproduced deterministically: the caller is cancelled
from ``stop_as``, the moment ``supervise`` decides to stop the session. Real session,
script provider, real SQLite store.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agents.loop import AgentSession
from agents.providers.script import ScriptProvider
from eventstore.urls import open_store
from orchestrator.execute import Cancel, supervise
from tests.unit.agents._runtime import definition

SLOW = [{"text": "working", "tool_calls": [{"name": "Bash", "input": {
    "command": "echo started >> trace.txt && sleep 30"}}]}, {"text": "never"}]


async def _types(store: Any, sid: str) -> list[str]:
    return [e.type async for e in store.read_stream(f"session-{sid}")]


@pytest.mark.parametrize("trigger", ["cancel", "timeout"])
async def test_caller_cancelled_while_the_session_records_its_stop(
        tmp_path: Path, trigger: str) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/events.db")
    ws = tmp_path / "ws"
    ws.mkdir()
    running = asyncio.Event()

    def progress(kind: str, data: dict[str, Any]) -> None:
        if kind == "tool.requested":
            running.set()

    session = AgentSession(definition(), "work", provider=ScriptProvider(turns=SLOW),
                           store=store, workspace=ws, run_id="run-race",
                           on_progress=progress)
    handle = Cancel()
    caller: asyncio.Task[Any] | None = None
    stops: list[tuple[str, str]] = []

    def stop_as(status: str, reason: str) -> None:
        stops.append((status, reason))
        session.cancelled_as = (status, reason)
        assert caller is not None
        caller.cancel()  # the same moment: the run is cancelled as the session stops

    caller = asyncio.ensure_future(supervise(
        session.run(), stop_as, 0.5 if trigger == "timeout" else None,
        handle if trigger == "cancel" else None, None, 60.0))
    await asyncio.wait_for(running.wait(), 10)
    if trigger == "cancel":
        handle.cancel("cancelled", "Ctrl-C")
    with pytest.raises(asyncio.CancelledError):  # the caller's cancel is not swallowed
        await asyncio.wait_for(caller, 10)
    assert caller.cancelled()
    want = ("cancelled", "Ctrl-C") if trigger == "cancel" else \
        ("timeout", "task timed out after 0.5 s")
    assert stops == [want]
    types = await _types(store, session.session_id)
    assert types[-1] == "agent.failed", types  # recorded before the caller was released
    ended = [e async for e in store.read_stream(f"session-{session.session_id}")][-1]
    assert (ended.data["status"], ended.data["error"]) == want
    assert types.count("agent.failed") == 1
    await store.close()


async def test_a_second_cancel_while_stopping_is_held_until_the_session_ended(
        tmp_path: Path) -> None:
    """The caller is cancelled, and cancelled again while the session records its end:
    the wait goes on until ``agent.failed`` is in the store, then the caller ends."""
    store = await open_store(f"sqlite:///{tmp_path}/events.db")
    ws = tmp_path / "ws"
    ws.mkdir()
    running = asyncio.Event()
    session = AgentSession(definition(), "work", provider=ScriptProvider(turns=SLOW),
                           store=store, workspace=ws, run_id="run-race2",
                           on_progress=lambda k, d: running.set() if k == "tool.requested"
                           else None)
    stops: list[tuple[str, str]] = []

    def stop_as(status: str, reason: str) -> None:
        stops.append((status, reason))
        caller.cancel()  # the second cancel, while the session records its end

    caller: asyncio.Task[Any] = asyncio.ensure_future(supervise(
        session.run(), stop_as, None, None, None, 60.0))
    await asyncio.wait_for(running.wait(), 10)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(caller, 10)
    assert stops == [("cancelled", "the attempt was cancelled")]
    types = await _types(store, session.session_id)
    assert types[-1] == "agent.failed" and types.count("agent.failed") == 1, types
    await store.close()
