"""Resuming a session from its stream (agents.resume): recorded turns are not asked again,
recorded tool calls are not run again, the action in flight follows the stated policy.

A crash is reproduced without faking anything: a session is recorded for real, then every
prefix of its stream is copied into a fresh store (the state a SIGKILL after that append
leaves behind) and resumed with the same script. The CLI test kills a real process.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agents.approval import PolicyApprover
from agents.loop import AgentSession
from agents.providers.base import ModelRequest, ModelResponse
from agents.providers.script import ScriptProvider
from agents.resume import SessionFinished, SessionTaken, close_abandoned, load_session
from eventstore.backends.memory import MemoryStore
from eventstore.model import NewEvent, RecordedEvent
from orchestrator.fold import fold
from tests.unit.agents._runtime import definition, of_type

SCRIPT: list[Any] = [
    {"text": "start", "tool_calls": [
        {"name": "Bash", "input": {"command": "echo one >> trace.txt"}},
        {"name": "Read", "input": {"file_path": "app.py"}}]},
    {"tool_calls": [{"name": "Bash", "input": {"command": "rm -rf build"}}]},  # denied
    {"tool_calls": [{"name": "Write", "input": {"file_path": "b.py", "content": "x = 1\n"}}]},
    {"tool_calls": [{"name": "Bash", "input": {"command": "echo two >> trace.txt"}}]},
    {"text": "done"},
]


async def record(ws: Path, turns: list[Any] = SCRIPT) -> tuple[str, list[RecordedEvent]]:
    store = MemoryStore()
    result = await AgentSession(definition(), "do the task", provider=ScriptProvider(
        turns=turns), store=store, workspace=ws, run_id="run-r").run()
    assert result.status == "completed"
    return result.session_id, [e async for e in store.read_stream(
        f"session-{result.session_id}")]


async def crashed_store(events: list[RecordedEvent]) -> MemoryStore:
    """A store holding exactly these events, as the crashed process left it."""
    store = MemoryStore()
    await store.append(events[0].stream, [NewEvent(
        type=e.type, data=e.data, actor=e.actor, correlation_id=e.correlation_id,
        causation_id=e.causation_id, id=e.id, occurred_at=e.occurred_at) for e in events])
    return store


async def resume(store: MemoryStore, sid: str, ws: Path, turns: list[Any] = SCRIPT
                 ) -> tuple[Any, list[RecordedEvent]]:
    log = await load_session(store, sid)
    session = AgentSession(definition(), log.prompt, provider=ScriptProvider(turns=turns),
                           store=store, workspace=ws, session_id=sid, run_id=log.run_id,
                           causation_id=log.causation_id)
    result = await session.run(resume=log)
    return result, [e async for e in store.read_stream(f"session-{sid}")]


def outcomes(events: list[RecordedEvent]) -> Counter[str]:
    return Counter(e.data["tool_use_id"] for e in events
                   if e.type in ("tool.completed", "tool.denied"))


async def test_every_crash_point_resumes_without_repeating_recorded_work(ws: Path) -> None:
    sid, full = await record(ws)
    uses = {e.data["tool_use_id"]: e.data["tool"] for e in of_type(full, "tool.requested")}
    assert len(uses) == 5
    for cut in range(1, len(full) - 1):
        prefix = full[:cut]
        store = await crashed_store(prefix)
        result, events = await resume(store, sid, ws)
        where = f"crash after {cut} events ({prefix[-1].type})"
        assert result.status == "completed" and result.final_text == "done", where
        assert [e.id for e in events[:cut]] == [e.id for e in prefix]
        resumed = events[cut]
        assert resumed.type == "agent.resumed" and resumed.version == cut, where
        assert resumed.data["from_version"] == cut - 1
        # every turn answered once, every call decided once, requested once
        turns = [e.data["turn"] for e in of_type(events, "model.responded")]
        assert turns == [1, 2, 3, 4, 5], where
        assert outcomes(events) == Counter(dict.fromkeys(uses, 1)), where
        assert Counter(e.data["tool_use_id"] for e in of_type(events, "tool.requested")) \
            == Counter(dict.fromkeys(uses, 1)), where
        # nothing recorded before the crash is redone after it
        before = {e.data["tool_use_id"] for e in prefix
                  if e.type in ("tool.completed", "tool.denied")}
        after = {e.data["tool_use_id"] for e in events[cut:]
                 if e.type in ("tool.completed", "tool.denied")}
        assert not before & after, where
        assert not {e.data["turn"] for e in of_type(prefix, "model.responded")} & {
            e.data["turn"] for e in of_type(events[cut:], "model.responded")}, where
        # the call in flight: interrupted (Bash) or run again (Read), marked resumed
        in_flight = {e.data["tool_use_id"] for e in of_type(prefix, "tool.requested")} - before
        for e in events[cut:]:
            if e.type == "tool.completed" and e.data["tool_use_id"] in in_flight:
                assert e.data["resumed"] is True, where
                if e.data["tool"] == "Read":
                    assert e.data["reexecuted"] is True and not e.data["is_error"]
                else:
                    assert e.data["error_kind"] == "interrupted" and e.data["is_error"]
        assert [p["tool_use_id"] for p in resumed.data["tool_calls_pending"]
                if p["state"] == "running"] == sorted(in_flight, key=list(uses).index), where
        # one causation, one correlation, and the fold sees a finished, whole session
        assert {e.causation_id for e in events[1:]} == {full[0].id}
        assert {e.correlation_id for e in events} == {"run-r"}
        state = fold(events, "run-r")
        s = state.sessions[sid]
        assert s.status == "completed" and len(s.resumes) == 1 and not state.incomplete(), where


async def test_resume_continues_the_same_fingerprints(ws: Path) -> None:
    """No call was in flight: the resumed model calls see exactly the original
    conversation (same fingerprint and message digest for each turn)."""
    sid, full = await record(ws)
    called = {e.data["turn"]: e.data for e in of_type(full, "model.called")}
    cut = next(i for i, e in enumerate(full) if e.type == "model.called"
               and e.data["turn"] == 3)  # crash right before turn 3's call is recorded
    store = await crashed_store(full[:cut])
    (ws / "b.py").unlink()  # the workspace as it was at that point
    (ws / "trace.txt").write_text("one\n")
    _, events = await resume(store, sid, ws)
    assert (ws / "trace.txt").read_text() == "one\ntwo\n"
    for e in of_type(events[cut:], "model.called"):
        assert e.data["fingerprint"] == called[e.data["turn"]]["fingerprint"]
        assert e.data["message_digest"] == called[e.data["turn"]]["message_digest"]


async def test_model_call_in_flight_is_asked_again_as_the_next_attempt(ws: Path) -> None:
    sid, full = await record(ws)
    cut = next(i for i, e in enumerate(full) if e.type == "model.called"
               and e.data["turn"] == 4) + 1
    store = await crashed_store(full[:cut])
    _, events = await resume(store, sid, ws)
    resumed = events[cut]
    assert resumed.data["model_call_in_flight"] == {"turn": 4, "attempts": 1}
    again = [e.data for e in of_type(events[cut:], "model.called") if e.data["turn"] == 4]
    assert [d["attempt"] for d in again] == [2]
    assert (ws / "trace.txt").read_text().count("two") >= 1


async def test_two_resumers_only_one_continues(ws: Path) -> None:
    sid, full = await record(ws)
    store = await crashed_store(full[:6])
    log = await load_session(store, sid)

    async def one() -> Any:
        session = AgentSession(definition(), log.prompt, provider=ScriptProvider(turns=SCRIPT),
                               store=store, workspace=ws, session_id=sid, run_id=log.run_id)
        return await session.run(resume=log)

    got = await asyncio.gather(one(), one(), return_exceptions=True)
    assert sum(isinstance(g, SessionTaken) for g in got) == 1
    [ok] = [g for g in got if not isinstance(g, BaseException)]
    assert ok.status == "completed"
    events = [e async for e in store.read_stream(f"session-{sid}")]
    assert len(of_type(events, "agent.resumed")) == 1
    assert len(of_type(events, "agent.finished")) == 1


async def test_a_finished_session_is_not_resumed(ws: Path) -> None:
    sid, full = await record(ws)
    store = await crashed_store(full)
    with pytest.raises(SessionFinished, match="already ended: completed"):
        await load_session(store, sid)
    with pytest.raises(Exception, match="no session stream"):
        await load_session(store, "nope")


async def test_capped_output_is_seen_as_recorded(ws: Path) -> None:
    turns = [{"tool_calls": [{"name": "Bash", "input": {"command": "seq 1 5000"}}]},
             {"text": "done"}]
    sid, full = await record(ws, turns)
    done = of_type(full, "tool.completed")[0]
    assert done.data["output_chars"] > 10_000  # seq 1 5000 prints 23,893 characters
    cut = full.index(done) + 1
    store = await crashed_store(full[:cut])
    seen: list[ModelRequest] = []

    class Peek(ScriptProvider):
        async def complete(self, request: ModelRequest) -> ModelResponse:
            seen.append(request)
            return await super().complete(request)

    log = await load_session(store, sid)
    assert log.capped == [done.data["tool_use_id"]]
    session = AgentSession(definition(), log.prompt, provider=Peek(turns=turns), store=store,
                           workspace=ws, session_id=sid, run_id=log.run_id)
    result = await session.run(resume=log)
    assert result.status == "completed" and len(seen) == 1
    [block] = seen[0].messages[-1].content
    assert block["content"] == done.data["output"] and "[output truncated" in block["content"]
    events = [e async for e in store.read_stream(f"session-{sid}")]
    assert events[cut].data["capped_outputs"] == [done.data["tool_use_id"]]


async def test_a_cancelled_session_resumes(ws: Path) -> None:
    store = MemoryStore()
    gate = asyncio.Event()

    class Hang(ScriptProvider):
        n = 0

        async def complete(self, request: ModelRequest) -> ModelResponse:
            self.n += 1
            if self.n == 2:
                gate.set()
                await asyncio.sleep(3600)
            return await super().complete(request)

    session = AgentSession(definition(), "do the task", provider=Hang(turns=SCRIPT),
                           store=store, workspace=ws, run_id="run-c")
    task = asyncio.create_task(session.run())
    await gate.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    sid = session.session_id
    result, events = await resume(store, sid, ws)
    assert result.status == "completed" and result.turns == 5
    assert [e.type for e in events].count("agent.failed") == 1
    resumed = of_type(events, "agent.resumed")[0]
    assert resumed.data["previous_status"] == "cancelled"
    assert fold(events, "run-c").sessions[sid].status == "completed"


async def test_crash_around_approvals(ws: Path, tmp_path: Path) -> None:
    """Approval pending: asked again (nothing ran). Refused but the denial not recorded:
    the denial is recorded. Approved and running: interrupted, not run again."""
    policy = tmp_path / "policy.yaml"
    policy.write_text('allow: ["Write(./ok.txt)"]\ndefault: deny\n')
    turns: list[Any] = [{"tool_calls": [
        {"name": "Write", "input": {"file_path": "ok.txt", "content": "fine"}},
        {"name": "Edit", "input": {"file_path": "app.py", "old_string": "hi",
                                   "new_string": "yo"}}]}, {"text": "done"}]
    defn = definition(mode="default")
    store = MemoryStore()
    first = await AgentSession(defn, "do it", provider=ScriptProvider(turns=turns),
                               store=store, workspace=ws, run_id="run-a",
                               approver=PolicyApprover(policy, ws)).run()
    sid = first.session_id
    full = [e async for e in store.read_stream(f"session-{sid}")]
    states: set[str] = set()
    for cut in range(1, len(full) - 1):
        crashed = await crashed_store(full[:cut])
        log = await load_session(crashed, sid)
        states |= {p.state for p in log.pending}
        result = await AgentSession(defn, log.prompt, provider=ScriptProvider(turns=turns),
                                    store=crashed, workspace=ws, session_id=sid,
                                    run_id=log.run_id, approver=PolicyApprover(policy, ws)
                                    ).run(resume=log)
        events = [e async for e in crashed.read_stream(f"session-{sid}")]
        where = f"crash after {cut} events ({full[cut - 1].type})"
        assert result.status == "completed", where
        assert sorted(outcomes(events).values()) == [1, 1], where
        edit = [e for e in events if e.type in ("tool.denied", "tool.completed")
                and e.data["tool"] == "Edit"]
        if full[cut - 1].type == "tool.requested" and full[cut - 1].data["tool"] == "Edit":
            # not a real crash point (they are appended together): the conservative answer
            assert edit[0].data["error_kind"] == "interrupted", where
        else:
            assert edit[0].type == "tool.denied", where
        assert (ws / "app.py").read_text() == "print('hi')\n", where
    assert states == {"new", "asking", "refused", "running"}
    assert (ws / "app.py").read_text() == "print('hi')\n"


async def test_script_provider_skips_what_the_recorded_session_was_served() -> None:
    turns: list[Any] = [{"error": {"message": "overloaded", "transient": True}},
                        {"tool_calls": [{"name": "Read", "input": {"file_path": "a"}}]},
                        {"match": "never", "text": "only on request"},
                        {"text": "last"}]
    provider = ScriptProvider(turns=turns)
    provider.resume_after([{"response_id": "script-2-1"}, {"response_id": "not-a-script"}])
    request = ModelRequest(model="m", system="", messages=[])
    response = await provider.complete(request)
    assert response.content == [{"type": "text", "text": "last"}]
    assert response.response_id == "script-4-1"


async def test_close_abandoned_makes_the_trail_whole(ws: Path) -> None:
    sid, full = await record(ws)
    cut = next(i for i, e in enumerate(full) if e.type == "tool.requested") + 1
    store = await crashed_store(full[:cut])  # killed while the first Bash ran
    log = await load_session(store, sid)
    assert [p.state for p in log.pending] == ["running", "new"]
    assert await close_abandoned(store, log, "replaced by a new attempt") == 2
    events = [e async for e in store.read_stream(f"session-{sid}")]
    assert [e.type for e in events[cut:]] == ["tool.completed", "agent.failed"]
    assert events[cut].data["error_kind"] == "interrupted"
    assert events[-1].data["status"] == "abandoned"
    state = fold(events, "run-r")
    assert state.sessions[sid].status == "abandoned" and not state.incomplete()
    with pytest.raises(SessionFinished, match="abandoned"):
        await load_session(store, sid)
    with pytest.raises(SessionTaken):  # the head moved since `log` was read
        await close_abandoned(store, log, "again")
