"""The agent loop: events as they happen, causation, budgets, retries, bad model output."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agents.approval import PolicyApprover
from agents.loop import AgentSession, Budgets, RetryPolicy
from agents.providers.base import (
    ModelRequest,
    ModelResponse,
    ProviderError,
    TransientProviderError,
    Usage,
)
from agents.providers.script import ScriptProvider
from agents.tools import DelegateRequest
from eventstore.backends.memory import MemoryStore
from eventstore.urls import open_store
from tests.unit.agents._runtime import definition, of_type, one_call, run_script


async def test_trail_order_and_causation(ws: Path) -> None:
    turns = [{"text": "look", "tool_calls": [{"name": "Read", "input": {"file_path": "app.py"}}]},
             {"tool_calls": [{"name": "Write", "input": {"file_path": "b.py", "content": "x"}}]},
             {"text": "all done"}]
    result, events = await run_script(turns, ws, run_id="run-1", causation_id="disp-1",
                                      parent_session="parent-9")
    assert result.status == "completed" and result.final_text == "all done"
    assert result.turns == 3 and result.tool_calls == 2
    assert [e.type for e in events] == [
        "agent.started", "model.called", "model.responded", "tool.requested", "tool.completed",
        "model.called", "model.responded", "tool.requested", "tool.completed",
        "model.called", "model.responded", "agent.finished"]
    assert {e.correlation_id for e in events} == {"run-1"}
    assert {e.causation_id for e in events} == {"disp-1"}
    assert {e.actor for e in events} == {"agent:tester"}
    started = events[0].data
    assert started["parent_session"] == "parent-9" and started["provider"] == "script"
    assert "Read" in started["allowed_tools"] and "Agent" not in started["allowed_tools"]
    assert len(started["definition_hash"]) == 64
    write_done = events[8].data
    assert write_done["files"][0]["path"] == "b.py" and len(write_done["files"][0]["sha256"]) == 64
    called = events[1].data
    assert len(called["message_digest"]) == 64 and "request" not in called
    assert events[-1].data["status"] == "completed" and events[-1].data["turns"] == 3


async def test_standalone_causation_is_agent_started(ws: Path) -> None:
    result, events = await run_script([{"text": "hi"}], ws)
    assert events[0].causation_id is None
    assert {e.causation_id for e in events[1:]} == {events[0].id}
    assert result.run_id == result.session_id


async def test_events_are_appended_as_they_happen(ws: Path) -> None:
    """The provider looks at the store at each call: the previous turn is already there."""
    store = MemoryStore()
    seen: list[list[str]] = []

    class Peek(ScriptProvider):
        async def complete(self, request: ModelRequest) -> ModelResponse:
            streams = await store.streams()
            evs = [e async for e in store.read_stream(streams[0].stream)]
            seen.append([e.type for e in evs])
            return await super().complete(request)

    prov = Peek(turns=one_call("Bash", {"command": "echo hi"}))
    await AgentSession(definition(), "go", provider=prov, store=store, workspace=ws).run()
    assert seen[0] == ["agent.started", "model.called"]
    assert seen[1][-3:] == ["tool.requested", "tool.completed", "model.called"]


async def test_sqlite_store_trail(ws: Path, tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/events.db")
    try:
        result, events = await run_script(one_call("Bash", {"command": "echo sqlite"}), ws,
                                          store=store)
        assert result.status == "completed"
        done = of_type(events, "tool.completed")[0].data
        assert done["exit_code"] == 0 and "sqlite" in done["output"]
        assert (await store.verify()).ok
    finally:
        await store.close()


# -- budgets -------------------------------------------------------------------------------

async def test_budget_turns(ws: Path) -> None:
    turns = [{"repeat": True, "tool_calls": [{"name": "Bash", "input": {"command": "echo x"}}]}]
    result, events = await run_script(turns, ws, budgets=Budgets(max_turns=3))
    assert result.status == "budget_exceeded:turns" and result.turns == 3
    fin = events[-1]
    assert fin.type == "agent.finished" and fin.data["status"] == "budget_exceeded:turns"
    assert fin.data["budget"] == {"limit": 3, "used": 3}


async def test_max_turns_from_definition(ws: Path) -> None:
    turns = [{"repeat": True, "tool_calls": [{"name": "Bash", "input": {"command": "echo x"}}]}]
    result, _ = await run_script(turns, ws, defn=definition(extra="maxTurns: 2"))
    assert result.status == "budget_exceeded:turns" and result.turns == 2


async def test_budget_tokens_and_cost(ws: Path) -> None:
    turns = {"usage": {"input_tokens": 600, "output_tokens": 100},
             "turns": [{"repeat": True, "tool_calls": [{"name": "TodoWrite",
                                                         "input": {"todos": []}}]}]}
    result, events = await run_script(turns, ws, budgets=Budgets(max_tokens=1500))  # type: ignore[arg-type]
    assert result.status == "budget_exceeded:tokens" and result.turns == 3
    assert result.usage["input_tokens"] == 1800

    def price(model: str, usage: Usage) -> float:
        return usage.input_tokens * 1e-5

    result, events = await run_script(turns, ws, budgets=Budgets(max_cost_usd=0.015),  # type: ignore[arg-type]
                                      cost_fn=price)
    assert result.status == "budget_exceeded:cost" and result.turns == 3
    assert of_type(events, "model.responded")[0].data["cost_usd"] == pytest.approx(0.006)
    assert result.cost_usd == pytest.approx(0.018)


async def test_budget_wall_time_interrupts_a_tool(ws: Path) -> None:
    turns = one_call("Bash", {"command": "sleep 30"})
    result, events = await run_script(turns, ws, budgets=Budgets(max_wall_seconds=0.5))
    assert result.status == "budget_exceeded:wall_time"
    done = of_type(events, "tool.completed")[0].data
    assert done["is_error"] and done["duration_ms"] < 5000
    assert events[-1].data["status"] == "budget_exceeded:wall_time"


# -- retries and provider failures -----------------------------------------------------------

async def test_transient_errors_retried_with_events(ws: Path) -> None:
    delays: list[float] = []

    async def fake_sleep(s: float) -> None:
        delays.append(s)

    turns = [{"error": {"message": "overloaded", "status": 529, "transient": True}},
             {"error": {"message": "rate limited", "status": 429, "transient": True,
                        "retry_after": 7}},
             {"text": "finally"}]
    result, events = await run_script(
        turns, ws, retry=RetryPolicy(max_attempts=5, base_delay=1, jitter=0.25),
        sleep=fake_sleep)
    assert result.status == "completed" and result.final_text == "finally"
    failed = of_type(events, "model.failed")
    assert [f.data["status"] for f in failed] == [529, 429]
    assert all(f.data["transient"] and f.data["will_retry"] for f in failed)
    assert 0.75 <= delays[0] <= 1.25 and delays[1] >= 7  # backoff, then retry_after wins
    assert [e.data["attempt"] for e in of_type(events, "model.called")] == [1, 2, 3]


async def test_retries_give_up(ws: Path) -> None:
    async def no_sleep(s: float) -> None:
        return None

    turns = [{"repeat": True, "error": {"message": "503", "status": 503, "transient": True}}]
    result, events = await run_script(turns, ws, retry=RetryPolicy(max_attempts=3),
                                      sleep=no_sleep)
    assert result.status == "failed" and "after 3 attempt" in (result.error or "")
    assert len(of_type(events, "model.failed")) == 3
    assert not of_type(events, "model.failed")[-1].data["will_retry"]
    assert events[-1].type == "agent.failed"


async def test_fatal_provider_error(ws: Path) -> None:
    result, events = await run_script([{"error": "bad api key"}], ws)
    assert result.status == "failed" and "bad api key" in (result.error or "")
    assert [e.type for e in events][-2:] == ["model.failed", "agent.failed"]


class Garbage:
    name = "garbage"

    def __init__(self, what: str) -> None:
        self.what = what

    async def complete(self, request: ModelRequest) -> Any:
        if self.what == "raise":
            raise KeyError("choices")
        return {"not": "a response"}

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize("what", ["raise", "return"])
async def test_provider_garbage_is_recorded(ws: Path, what: str) -> None:
    store = MemoryStore()
    result = await AgentSession(definition(), "go", provider=Garbage(what), store=store,
                                workspace=ws).run()
    events = [e async for e in store.read_stream(f"session-{result.session_id}")]
    assert result.status == "failed"
    assert [e.type for e in events] == ["agent.started", "model.called", "model.failed",
                                        "agent.failed"]
    assert events[-1].data["error_kind"] == "provider"


# -- malformed tool calls ----------------------------------------------------------------------

async def test_malformed_tool_calls_become_tool_errors(ws: Path) -> None:
    raw = {"raw": {"stop_reason": "tool_use", "content": [
        {"type": "tool_use", "id": "t1", "name": "Frobnicate", "input": {}},
        {"type": "tool_use", "id": "t2", "name": "Read", "input": "{not json"},
        {"type": "tool_use", "id": "t3", "name": "Read", "input": [1, 2]},
        {"type": "tool_use", "name": "Read", "input": {"file_path": "app.py"}},
        {"type": "tool_use", "id": "t5", "name": "Read", "input": {"path": "app.py"}},
        {"type": "tool_use", "id": "t6", "input": {}},
        {"type": "tool_use", "id": "t7", "name": "Read", "input": '{"file_path": "app.py"}'},
        "not even a block"]}}
    result, events = await run_script([raw, {"text": "ok"}], ws)
    assert result.status == "completed"
    done = of_type(events, "tool.completed")
    kinds = [d.data.get("error_kind") for d in done]
    assert kinds == ["unknown_tool", "invalid_json", "invalid_input", None, "invalid_input",
                     "malformed_call", None]
    assert done[3].data["tool_use_id"] == "toolu_missing_1_3" and not done[3].data["is_error"]
    assert "missing required property 'file_path'" in done[4].data["output"]
    assert len(of_type(events, "tool.requested")) == 7
    # the model saw every error as a tool_result
    last_call = of_type(events, "model.called")[-1].data
    assert last_call["messages"] == 3


async def test_record_prompts_opt_in(ws: Path) -> None:
    _, events = await run_script([{"text": "hi"}], ws, record_prompts=True)
    req = of_type(events, "model.called")[0].data["request"]
    assert req["messages"][0]["content"][0]["text"] == "do the task"
    assert "You are a test agent." in req["system"]


# -- permissions and approvals -----------------------------------------------------------------

async def test_ask_goes_to_approver_with_events(ws: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text('allow: ["Edit(./ok.txt)"]\ndefault: deny\n')
    defn = definition(mode="default")
    turns = [{"tool_calls": [
        {"name": "Write", "input": {"file_path": "ok.txt", "content": "fine"}},
        {"name": "Edit", "input": {"file_path": "app.py", "old_string": "hi",
                                   "new_string": "yo"}}]}, {"text": "done"}]
    assert "Edit(./ok.txt)" in policy.read_text()
    result, events = await run_script(turns, ws, defn=defn,
                                      approver=PolicyApprover(policy, ws))
    assert [e.type for e in events[3:10]] == [
        "tool.requested", "approval.requested", "approval.resolved", "tool.completed",
        "tool.requested", "approval.requested", "approval.resolved"]
    assert events[5].data["approved"] is True and events[9].data["approved"] is False
    assert events[10].type == "tool.denied" and result.denials == 1
    assert (ws / "ok.txt").read_text() == "fine"
    assert (ws / "app.py").read_text() == "print('hi')\n"


async def test_no_approver_means_deny(ws: Path) -> None:
    _result, events = await run_script(one_call("Write", {"file_path": "x", "content": "y"}),
                                      ws, defn=definition(mode="default"))
    denied = of_type(events, "tool.denied")[0].data
    assert "no approver" in denied["reason"] and not (ws / "x").exists()


async def test_tool_not_in_definition_is_denied(ws: Path) -> None:
    _result, events = await run_script(one_call("Write", {"file_path": "x", "content": "y"}),
                                      ws, defn=definition(tools="Read"))
    denied = of_type(events, "tool.denied")[0].data
    assert "not in the agent's tools" in denied["reason"]
    assert of_type(events, "agent.started")[0].data["allowed_tools"] == ["Read"]


# -- delegation --------------------------------------------------------------------------------

async def test_agent_tool_delegates_through_callback(ws: Path) -> None:
    store = MemoryStore()
    children: list[str] = []

    async def delegate(req: DelegateRequest) -> str:
        child = AgentSession(definition(name=req.subagent_type), req.prompt,
                             provider=ScriptProvider(turns=[{"text": "child result"}]),
                             store=store, workspace=ws, parent_session=req.parent_session,
                             depth=req.depth)
        res = await child.run()
        children.append(res.session_id)
        return res.final_text

    result = await AgentSession(
        definition(tools=None), "delegate it", store=store, workspace=ws, delegate=delegate,
        provider=ScriptProvider(turns=one_call("Agent", {
            "subagent_type": "helper", "prompt": "sub task", "description": "sub"}))).run()
    events = [e async for e in store.read_stream(f"session-{result.session_id}")]
    done = of_type(events, "tool.completed")[0].data
    assert done["output"] == "child result" and not done["is_error"]
    child = [e async for e in store.read_stream(f"session-{children[0]}")]
    assert child[0].data["parent_session"] == result.session_id and child[0].data["depth"] == 1


async def test_cancellation_is_recorded(ws: Path) -> None:
    store = MemoryStore()
    session = AgentSession(definition(), "go", store=store, workspace=ws,
                           provider=ScriptProvider(turns=one_call("Bash",
                                                                  {"command": "sleep 30"})))
    task = asyncio.create_task(session.run())
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    events = [e async for e in store.read_stream(session.stream)]
    assert events[-1].type == "agent.failed" and events[-1].data["status"] == "cancelled"


async def test_provider_error_types_are_distinct() -> None:
    assert issubclass(TransientProviderError, ProviderError)
