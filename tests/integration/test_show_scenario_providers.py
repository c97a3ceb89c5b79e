"""Issue 4's "show" over the real wire protocols: the same backend-implementer session as
the script-provider scenario (read, edit, write a test, run pytest, be denied `rm -rf /`
and `curl | sh`, finish), with the official anthropic and openai SDKs talking to the
scripted model servers, recorded in a real SQLite store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.definition import load_definition
from agents.loop import AgentSession
from agents.models import ModelCatalog
from agents.providers.anthropic import AnthropicProvider
from agents.providers.openai import OpenAIProvider
from eventstore.urls import open_store
from tests.fakes.model_servers import AnthropicServer, OpenAIServer, Script, text
from tests.scenario import ROOT, STEPS, health_repo


def scripted_turns() -> list[dict[str, Any]]:
    """The turns of examples/scripts/health-endpoint.yaml as API replies."""
    doc = yaml.safe_load((ROOT / "examples/scripts/health-endpoint.yaml").read_text())
    replies: list[dict[str, Any]] = []
    for n, turn in enumerate(doc["turns"]):
        calls = turn.get("tool_calls") or []
        if not calls:
            replies.append(text(turn["text"]))
            continue
        blocks: list[dict[str, Any]] = [{"type": "text", "text": turn["text"]}]
        blocks += [{"type": "tool_use", "id": f"toolu_{n}_{k}", "name": c["name"],
                    "input": c["input"]} for k, c in enumerate(calls)]
        replies.append({"content": blocks, "stop_reason": "tool_use"})
    return replies


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return health_repo(tmp_path)


@pytest.mark.parametrize("provider_name,stream", [
    ("anthropic", False), ("anthropic", True), ("openai", False), ("openai", True)])
async def test_show_scenario_over_the_wire(repo: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           provider_name: str, stream: bool) -> None:
    # the Bash tool must find this interpreter's pytest, as `orchestrail agents run` arranges
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:/usr/bin:/bin")
    definition = load_definition(repo / ".claude/agents/backend-implementer.md")
    script = Script(scripted_turns(), fallback=None)
    server = AnthropicServer(script) if provider_name == "anthropic" else OpenAIServer(script)
    store = await open_store(f"sqlite:///{tmp_path}/events.db")
    with server as api:
        provider: Any = (
            AnthropicProvider(base_url=api.url, api_key="sk-ant-test", stream=stream)
            if provider_name == "anthropic"
            else OpenAIProvider(base_url=api.url + "/v1", api_key="sk-test", stream=stream))
        result = await AgentSession(
            definition, "Add a /health endpoint and its test", provider=provider, store=store,
            workspace=repo, model=ModelCatalog().resolve(definition.model, provider_name),
            provider_name=provider_name, run_id="run-wire").run()
        await provider.aclose()
    try:
        assert result.status == "completed", result.error
        assert result.denials == 2 and result.tool_calls == 6
        assert '"/health": health' in (repo / "app.py").read_text()
        events = [e async for e in store.read_stream(f"session-{result.session_id}")]
        assert (await store.verify()).ok
    finally:
        await store.close()
    steps = [(e.type, e.data.get("tool")) for e in events
             if e.type.startswith(("tool.", "agent."))]
    assert steps == STEPS
    assert events[0].data["provider"] == provider_name
    assert all(e.causation_id == events[0].id and e.correlation_id == "run-wire"
               for e in events[1:])
    pytest_run = [e for e in events if e.type == "tool.completed"][3]
    assert pytest_run.data["exit_code"] == 0 and "2 passed" in pytest_run.data["output"]
    responded = [e for e in events if e.type == "model.responded"]
    assert len(responded) == 6 and all(e.data["usage"]["output_tokens"] > 0 for e in responded)
    # the model saw both denials as tool errors: the last request carries them
    last = script.requests[-1]
    assert "rm -rf /" in str(last) and "curl" in str(last)
