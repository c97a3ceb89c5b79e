"""The replay provider: recorded model turns served by fingerprint, divergence detected."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agents.fingerprint import fingerprint
from agents.loop import AgentSession
from agents.providers.base import Message
from agents.providers.replay import Divergence, ReplayProvider
from agents.providers.script import ScriptProvider
from eventstore.backends.memory import MemoryStore
from eventstore.urls import open_store
from tests.unit.agents._runtime import definition, of_type

TURNS = [
    {"text": "look", "tool_calls": [{"name": "Bash", "input": {"command": "echo $RANDOM"}}]},
    {"tool_calls": [{"name": "Write", "input": {"file_path": "out.txt", "content": "v1"}}]},
    {"text": "finished"},
]


async def record(store: object, ws: Path) -> str:
    result = await AgentSession(definition(), "task", provider=ScriptProvider(turns=TURNS),
                                store=store, workspace=ws).run()  # type: ignore[arg-type]
    assert result.status == "completed"
    return result.session_id


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_rerun_in_another_workspace_matches(tmp_path: Path, backend: str) -> None:
    store = MemoryStore() if backend == "memory" else await open_store(
        f"sqlite:///{tmp_path}/ev.db")
    try:
        ws1, ws2 = tmp_path / "a", tmp_path / "b"
        ws1.mkdir()
        ws2.mkdir()
        sid = await record(store, ws1)
        replay = ReplayProvider(store, sid, workspace=str(ws2))
        result = await AgentSession(definition(), "task", provider=replay, store=store,
                                    workspace=ws2).run()
        # tool output differs ($RANDOM) and so does the workspace: still the same path
        assert result.status == "completed" and result.final_text == "finished"
        assert (ws2 / "out.txt").read_text() == "v1"
        events = [e async for e in store.read_stream(f"session-{result.session_id}")]
        original = [e async for e in store.read_stream(f"session-{sid}")]
        assert [e.data["request_fingerprint"] for e in of_type(events, "model.responded")] == [
            e.data["request_fingerprint"] for e in of_type(original, "model.responded")]
    finally:
        await store.close()


async def test_divergence_names_the_turn(tmp_path: Path) -> None:
    store = MemoryStore()
    ws = tmp_path / "ws"
    ws.mkdir()
    sid = await record(store, ws)
    # Same first turn, but the file write now fails (out.txt is a directory): the
    # conversation differs from the recording at turn 3.
    ws2 = tmp_path / "ws2"
    (ws2 / "out.txt").mkdir(parents=True)
    result = await AgentSession(definition(), "task", provider=ReplayProvider(store, sid),
                                store=store, workspace=ws2).run()
    assert result.status == "failed"
    assert "replay divergence at turn 3" in (result.error or "")
    events = [e async for e in store.read_stream(f"session-{result.session_id}")]
    assert of_type(events, "model.failed")[0].data["error"].startswith("replay divergence")
    # a different prompt diverges at turn 1
    prov = ReplayProvider(store, f"session-{sid}")
    result = await AgentSession(definition(), "another task", provider=prov, store=store,
                                workspace=ws).run()
    assert "divergence at turn 1" in (result.error or "")


async def test_matching_is_by_fingerprint_not_position(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    store = MemoryStore()
    sid = await record(store, ws)
    events = [e async for e in store.read_stream(f"session-{sid}")]
    prov = ReplayProvider(events=list(reversed(events)))  # order of the events is irrelevant
    result = await AgentSession(definition(), "task", provider=prov, store=MemoryStore(),
                                workspace=ws).run()
    assert result.status == "completed"


def test_fingerprint_normalisation() -> None:
    def conv(result: str, path: str, err: bool = False) -> list[Message]:
        return [Message(role="user", content=[{"type": "text", "text": "go "}]),
                Message(role="assistant", content=[
                    {"type": "thinking", "thinking": "hmm", "signature": "x"},
                    {"type": "tool_use", "id": "t1", "name": "Read",
                     "input": {"file_path": f"{path}/a.py"}}]),
                Message(role="user", content=[{"type": "tool_result", "tool_use_id": "t1",
                                               "content": result, "is_error": err}])]
    a = fingerprint(conv("out 1", "/w1"), "/w1")
    assert a == fingerprint(conv("out 2", "/w2"), "/w2")  # outputs and workspace ignored
    assert a != fingerprint(conv("out 1", "/w1", err=True), "/w1")  # an error is not
    assert a != fingerprint(conv("out 1", "/elsewhere"), "/w1")


async def test_empty_recording_is_a_clear_error() -> None:
    from agents.providers.base import ModelRequest, ProviderError

    prov = ReplayProvider(MemoryStore(), "nothing")
    with pytest.raises(ProviderError, match="session-nothing holds no model.responded"):
        await prov.complete(ModelRequest(model="m", system="", messages=[]))
    with pytest.raises(Divergence):
        raise Divergence("x", turn=1, fingerprint="f")
    assert shutil.which("bash")
