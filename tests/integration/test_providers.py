"""The anthropic and openai providers against the scripted wire-protocol servers.

The official SDKs run unmodified over real HTTP on 127.0.0.1; what is asserted is what a
loop relies on: canonical blocks both ways, usage, and the transient/fatal split of every
failure (with ``retry_after`` read from the headers), never an SDK exception leaking out.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from agents.providers.anthropic import AnthropicProvider
from agents.providers.base import (
    Message,
    ModelRequest,
    Provider,
    ProviderError,
    ToolSpec,
    TransientProviderError,
)
from agents.providers.openai import INVALID, OpenAIProvider
from tests.fakes.model_servers import (
    AnthropicServer,
    OpenAIServer,
    Script,
    error,
    raw,
    text,
    tool_use,
)

READ = ToolSpec(name="Read", description="Read a file",
                input_schema={"type": "object", "properties": {"file_path": {"type": "string"}},
                              "required": ["file_path"]})


def _request(model: str = "claude-sonnet-5", **kw: Any) -> ModelRequest:
    return ModelRequest(model=model, system="You are a test agent.",
                        messages=[Message(role="user", content=[{"type": "text",
                                                                 "text": "read main.py"}])],
                        tools=[READ], max_tokens=200, **kw)


def _conversation() -> list[Message]:
    """A full tool round trip in canonical blocks, as the loop would send turn 2."""
    return [
        Message(role="user", content=[{"type": "text", "text": "read main.py"}]),
        Message(role="assistant", content=[
            {"type": "text", "text": "Reading."},
            {"type": "tool_use", "id": "toolu_a", "name": "Read",
             "input": {"file_path": "main.py"}}]),
        Message(role="user", content=[
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "print('hi')"},
            {"type": "text", "text": "and now?"}]),
    ]


# ---------------------------------------------------------------- anthropic


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_tool_call_then_text(stream: bool) -> None:
    script = Script([tool_use("Read", {"file_path": "main.py"}, preface="Reading.",
                              tool_id="toolu_a"),
                     text("It prints hi.")])
    with AnthropicServer(script) as api:
        p = AnthropicProvider(base_url=api.url, api_key="sk-test-000000000000", stream=stream)
        assert isinstance(p, Provider)
        first = await p.complete(_request())
        second = await p.complete(_request().model_copy(update={"messages": _conversation()}))
        await p.aclose()
    assert first.stop_reason == "tool_use"
    assert first.content == [{"type": "text", "text": "Reading."},
                             {"type": "tool_use", "id": "toolu_a", "name": "Read",
                              "input": {"file_path": "main.py"}}]
    assert first.usage.input_tokens > 0 and first.usage.output_tokens > 0
    assert first.response_id and first.response_id.startswith("msg_")
    assert first.model == "claude-sonnet-5"
    assert second.content == [{"type": "text", "text": "It prints hi."}]
    assert second.stop_reason == "end_turn"
    sent = script.requests[0]
    assert sent["system"] == "You are a test agent."
    assert sent["tools"][0]["name"] == "Read" and sent["tools"][0]["input_schema"]["required"]
    assert sent["max_tokens"] == 200 and bool(sent.get("stream")) is stream
    assert script.requests[1]["messages"][2]["content"][0] == {
        "type": "tool_result", "tool_use_id": "toolu_a", "content": "print('hi')"}


async def test_anthropic_cache_usage_and_private_keys_stripped() -> None:
    reply = text("ok")
    script = Script([reply])
    with AnthropicServer(script) as api:
        p = AnthropicProvider(base_url=api.url, api_key="sk-test-000000000000")
        msgs = [Message(role="user", content=[{"type": "text", "text": "x"}]),
                Message(role="assistant", content=[{
                    "type": "tool_use", "id": "t1", "name": "Read", "input": "{bad",
                    INVALID: {"raw": "{bad", "error": "x"}}]),
                Message(role="user", content=[{"type": "tool_result", "tool_use_id": "t1",
                                               "content": "bad input", "is_error": True}])]
        await p.complete(_request().model_copy(update={"messages": msgs}))
        await p.aclose()
    assert script.requests[0]["messages"][1]["content"][0] == {
        "type": "tool_use", "id": "t1", "name": "Read", "input": {}}


@pytest.mark.parametrize(("status", "transient"), [(429, True), (500, True), (529, True),
                                                   (503, True), (400, False), (401, False),
                                                   (403, False), (404, False)])
async def test_anthropic_status_errors_are_classified(status: int, transient: bool) -> None:
    with AnthropicServer(Script([error(status, "nope")])) as api:
        p = AnthropicProvider(base_url=api.url, api_key="sk-secret-key-abcd1234")
        with pytest.raises(ProviderError) as info:
            await p.complete(_request())
        await p.aclose()
    exc = info.value
    assert isinstance(exc, TransientProviderError) is transient
    assert exc.status == status
    assert f"HTTP {status}" in str(exc) and api.url in str(exc)
    assert "sk-secret" not in str(exc) and "...1234" in str(exc)
    if status in (429, 529):
        assert isinstance(exc, TransientProviderError) and exc.retry_after == 0.0
    if status == 401:
        assert "check the API key" in str(exc)


async def test_anthropic_retry_after_header_is_read() -> None:
    with AnthropicServer(Script([error(429, headers={"retry-after": "7"}),
                                 error(503, headers={"retry-after-ms": "1500"})])) as api:
        p = AnthropicProvider(base_url=api.url, api_key="k" * 20)
        with pytest.raises(TransientProviderError) as first:
            await p.complete(_request())
        with pytest.raises(TransientProviderError) as second:
            await p.complete(_request())
        await p.aclose()
    assert first.value.retry_after == 7.0
    assert second.value.retry_after == 1.5


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("body", ["this is not json", '{"type": "message"}', "[1, 2"])
async def test_anthropic_garbage_body_is_a_provider_error(body: str, stream: bool) -> None:
    ctype = "text/event-stream" if stream else "application/json"
    with AnthropicServer(Script([raw(200, body, ctype)])) as api:
        p = AnthropicProvider(base_url=api.url, api_key="k" * 20, stream=stream)
        with pytest.raises(ProviderError) as info:
            await p.complete(_request())
        await p.aclose()
    assert type(info.value) is ProviderError
    assert "anthropic" in str(info.value)


async def test_anthropic_connection_refused_is_transient() -> None:
    with AnthropicServer() as api:
        url = api.url
    p = AnthropicProvider(base_url=url, api_key="k" * 20, timeout=5)
    with pytest.raises(TransientProviderError, match="connection"):
        await p.complete(_request())
    await p.aclose()


def test_anthropic_missing_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ProviderError, match="ANTHROPIC_API_KEY"):
        AnthropicProvider(base_url="http://127.0.0.1:9")


async def test_anthropic_base_url_and_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    with AnthropicServer(Script([text("env ok")])) as api:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-from-env-0000")
        p = AnthropicProvider()
        out = await p.complete(_request())
        await p.aclose()
    assert out.content[0]["text"] == "env ok"


# ---------------------------------------------------------------- openai


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_tool_call_then_text(stream: bool) -> None:
    script = Script([tool_use("Read", {"file_path": "main.py"}, preface="Reading.",
                              tool_id="call_a"),
                     text("It prints hi. " * 10)])
    with OpenAIServer(script) as api:
        p = OpenAIProvider(base_url=api.url + "/v1", api_key="sk-test", stream=stream)
        first = await p.complete(_request("gpt-4.1"))
        second = await p.complete(_request("gpt-4.1").model_copy(
            update={"messages": _conversation()}))
        await p.aclose()
    assert first.stop_reason == "tool_use"
    assert first.content == [{"type": "text", "text": "Reading."},
                             {"type": "tool_use", "id": "call_a", "name": "Read",
                              "input": {"file_path": "main.py"}}]
    assert first.usage.input_tokens > 0 and first.usage.output_tokens > 0
    assert first.model == "gpt-4.1" and first.response_id
    assert second.content == [{"type": "text", "text": "It prints hi. " * 10}]
    assert second.stop_reason == "end_turn"
    sent = script.requests[0]
    assert sent["messages"][0] == {"role": "system", "content": "You are a test agent."}
    assert sent["tools"][0]["function"]["name"] == "Read"
    assert sent["tools"][0]["function"]["parameters"]["required"] == ["file_path"]
    if stream:
        assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    turn2 = script.requests[1]["messages"]
    assert turn2[2] == {"role": "assistant", "content": "Reading.", "tool_calls": [{
        "id": "toolu_a", "type": "function",
        "function": {"name": "Read", "arguments": json.dumps({"file_path": "main.py"})}}]}
    assert turn2[3] == {"role": "tool", "tool_call_id": "toolu_a", "content": "print('hi')"}
    assert turn2[4] == {"role": "user", "content": "and now?"}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("args", "why"), [('{"file_path": "a.py"', "not valid JSON"),
                                           ('["a.py"]', "must be a JSON object"),
                                           ("nonsense", "not valid JSON")])
async def test_openai_malformed_tool_arguments_are_marked_not_raised(
        stream: bool, args: str, why: str) -> None:
    bad = {"content": [{"type": "tool_use", "id": "call_bad", "name": "Read", "input": {},
                        "raw_arguments": args}], "stop_reason": "tool_use"}
    script = Script([bad, text("fixed")])
    with OpenAIServer(script) as api:
        p = OpenAIProvider(base_url=api.url + "/v1", api_key="sk-test", stream=stream)
        out = await p.complete(_request("gpt-4.1"))
        block = out.content[0]
        assert out.stop_reason == "tool_use"
        assert block["type"] == "tool_use" and block["id"] == "call_bad"
        assert block["input"] == args  # the raw text: the loop reports it as a tool error
        assert block[INVALID]["raw"] == args and why in block[INVALID]["error"]
        # The loop answers with an error result; the model sees its own raw arguments back.
        follow = [Message(role="user", content=[{"type": "text", "text": "go"}]),
                  Message(role="assistant", content=out.content),
                  Message(role="user", content=[{
                      "type": "tool_result", "tool_use_id": "call_bad", "is_error": True,
                      "content": block[INVALID]["error"]}])]
        await p.complete(_request("gpt-4.1").model_copy(update={"messages": follow}))
        await p.aclose()
    sent = script.requests[1]["messages"]
    assert sent[2]["tool_calls"][0]["function"]["arguments"] == args
    assert sent[3]["content"].startswith("Error: ")


@pytest.mark.parametrize(("status", "transient"), [(429, True), (500, True), (529, True),
                                                   (502, True), (400, False), (401, False),
                                                   (404, False)])
async def test_openai_status_errors_are_classified(status: int, transient: bool) -> None:
    script = Script([error(status, "nope", headers={"retry-after": "2"})])
    with OpenAIServer(script) as api:
        p = OpenAIProvider(base_url=api.url + "/v1", api_key="sk-secret-key-abcd1234")
        with pytest.raises(ProviderError) as info:
            await p.complete(_request("gpt-4.1"))
        await p.aclose()
    exc = info.value
    assert isinstance(exc, TransientProviderError) is transient
    assert exc.status == status and "sk-secret" not in str(exc)
    if transient:
        assert isinstance(exc, TransientProviderError) and exc.retry_after == 2.0


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("body", ["<html>502 bad gateway</html>", '{"object": "nothing"}',
                                  '{"choices": [{"index": 0'])
async def test_openai_garbage_body_is_a_provider_error(body: str, stream: bool) -> None:
    ctype = "text/event-stream" if stream else "application/json"
    with OpenAIServer(Script([raw(200, body, ctype)])) as api:
        p = OpenAIProvider(base_url=api.url + "/v1", api_key="sk-test", stream=stream)
        with pytest.raises(ProviderError) as info:
            await p.complete(_request("gpt-4.1"))
        await p.aclose()
    assert type(info.value) is ProviderError
    assert "openai" in str(info.value)


async def test_openai_settings_from_config(tmp_path: Any) -> None:
    from eventstore.config import parse_config_file

    with OpenAIServer(Script([text("cfg ok")])) as api:
        cfg_file = tmp_path / "orchestrail.yaml"
        cfg_file.write_text(f"providers:\n  openai:\n    base_url: {api.url}/v1\n"
                            "    api_key_env: MY_LOCAL_KEY\n    stream: true\n"
                            "    max_tokens_param: max_completion_tokens\n")
        import os

        os.environ["MY_LOCAL_KEY"] = "anything"
        try:
            p = OpenAIProvider.from_config(parse_config_file(cfg_file))
            out = await p.complete(_request("llama3.1:8b"))
            await p.aclose()
        finally:
            del os.environ["MY_LOCAL_KEY"]
        assert out.content == [{"type": "text", "text": "cfg ok"}]
        assert api.script.requests[0]["max_completion_tokens"] == 200
        assert api.script.requests[0]["stream"] is True
    cfg_file.write_text("providers:\n  openai:\n    base_urll: x\n")
    with pytest.raises(ProviderError, match=r"orchestrail.yaml: providers.openai.base_urll: "
                                            "unknown key"):
        OpenAIProvider.from_config(parse_config_file(cfg_file))
