"""The HTTP providers inside the real agent loop: what the trail shows for a bad tool call
from the model and for a transient API error (retried by the loop, each attempt an event)."""

from __future__ import annotations

from pathlib import Path

from agents.definition import parse_definition
from agents.loop import AgentSession
from agents.models import ModelCatalog
from agents.providers.anthropic import AnthropicProvider
from agents.providers.openai import OpenAIProvider
from eventstore.backends.memory import MemoryStore
from tests.fakes.model_servers import AnthropicServer, OpenAIServer, Script, error, text, tool_use

DEF = parse_definition("---\nname: reader\ndescription: reads\ntools: Read\nmodel: sonnet\n"
                       "---\nRead what you are asked to.\n")


async def test_openai_malformed_arguments_become_a_tool_error_in_the_trail(
        tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("print('hi')\n")
    bad = {"content": [{"type": "tool_use", "id": "call_bad", "name": "Read", "input": {},
                        "raw_arguments": '{"file_path": "main.py"'}], "stop_reason": "tool_use"}
    script = Script([bad, tool_use("Read", {"file_path": "main.py"}), text("It prints hi.")])
    store = MemoryStore()
    with OpenAIServer(script) as api:
        provider = OpenAIProvider(base_url=api.url + "/v1", api_key="sk-test", stream=True)
        model = ModelCatalog().resolve(DEF.model, "openai")
        result = await AgentSession(DEF, "read main.py", provider=provider, store=store,
                                    workspace=tmp_path, model=model, provider_name="openai",
                                    run_id="r1").run()
        await provider.aclose()
    assert result.status == "completed"
    events = [e async for e in store.read_stream(f"session-{result.session_id}")]
    done = [e.data for e in events if e.type == "tool.completed"]
    assert done[0]["tool_use_id"] == "call_bad" and done[0]["is_error"] is True
    assert done[0]["error_kind"] == "invalid_json"
    assert done[1]["is_error"] is False and "print('hi')" in done[1]["output"]
    # The model was told, in a tool message, what was wrong with its call.
    tool_msgs = [m for m in script.requests[1]["messages"] if m["role"] == "tool"]
    assert tool_msgs[0]["tool_call_id"] == "call_bad"
    assert tool_msgs[0]["content"].startswith("Error: ")


async def test_anthropic_transient_errors_are_retried_by_the_loop(tmp_path: Path) -> None:
    script = Script([error(529, "overloaded"), error(429, "slow down"), text("done")])
    store = MemoryStore()
    with AnthropicServer(script) as api:
        provider = AnthropicProvider(base_url=api.url, api_key="sk-test-0000")
        result = await AgentSession(DEF, "hi", provider=provider, store=store,
                                    workspace=tmp_path, model="claude-sonnet-5",
                                    provider_name="anthropic", run_id="r2",
                                    cost_fn=ModelCatalog().cost).run()
        await provider.aclose()
    assert result.status == "completed" and len(script.requests) == 3
    events = [e async for e in store.read_stream(f"session-{result.session_id}")]
    failed = [e.data for e in events if e.type == "model.failed"]
    assert len(failed) == 2
    responded = next(e.data for e in events if e.type == "model.responded")
    assert responded["cost_usd"] is not None and responded["cost_usd"] > 0
