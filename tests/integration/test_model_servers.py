"""The scripted model servers speak the real wire protocols: the official SDKs parse them.

Everything that tests providers builds on these stand-ins, so they are tested against the
real clients, streaming and not, including tool calls, usage and HTTP errors.
"""

from __future__ import annotations

import anthropic
import openai
import pytest

from tests.fakes.model_servers import (
    AnthropicServer,
    OpenAIServer,
    Script,
    error,
    text,
    tool_use,
)

MSG = [{"role": "user", "content": "hi"}]


def test_anthropic_sdk_non_streaming_and_streaming() -> None:
    script = Script([tool_use("Read", {"file_path": "app/main.py"}, tool_id="toolu_x"),
                     text("all done, " * 20)])
    with AnthropicServer(script) as api:
        client = anthropic.Anthropic(base_url=api.url, api_key="k", max_retries=0)
        first = client.messages.create(model="m", max_tokens=50, messages=MSG)  # type: ignore[arg-type]
        assert first.stop_reason == "tool_use"
        block = first.content[0]
        assert block.type == "tool_use" and block.id == "toolu_x"
        assert block.input == {"file_path": "app/main.py"}
        with client.messages.stream(model="m", max_tokens=50, messages=MSG) as stream:  # type: ignore[arg-type]
            final = stream.get_final_message()
        assert final.content[0].type == "text"
        assert final.content[0].text == "all done, " * 20
        assert final.usage.output_tokens > 0
    assert [r["messages"] for r in script.requests] == [MSG, MSG]
    assert script.requests[1]["stream"] is True


def test_anthropic_streamed_tool_input_reassembles() -> None:
    big = {"file_path": "x.py", "content": "print('hello')\n" * 30}
    with AnthropicServer(Script([tool_use("Write", big)])) as api:
        client = anthropic.Anthropic(base_url=api.url, api_key="k", max_retries=0)
        with client.messages.stream(model="m", max_tokens=50, messages=MSG) as stream:  # type: ignore[arg-type]
            final = stream.get_final_message()
    block = final.content[0]
    assert block.type == "tool_use" and block.input == big


def test_anthropic_errors_map_to_sdk_exceptions() -> None:
    with AnthropicServer(Script([error(429), error(500)])) as api:
        client = anthropic.Anthropic(base_url=api.url, api_key="k", max_retries=0)
        with pytest.raises(anthropic.RateLimitError):
            client.messages.create(model="m", max_tokens=5, messages=MSG)  # type: ignore[arg-type]
        with pytest.raises(anthropic.InternalServerError):
            client.messages.create(model="m", max_tokens=5, messages=MSG)  # type: ignore[arg-type]


def test_openai_sdk_tool_calls_streaming_and_not() -> None:
    script = Script([tool_use("Bash", {"command": "uv run pytest -q"}, tool_id="call_1"),
                     tool_use("Grep", {"pattern": "def health"}, preface="Looking.",
                              tool_id="call_2"),
                     text("finished")])
    with OpenAIServer(script) as api:
        client = openai.OpenAI(base_url=api.url + "/v1", api_key="k", max_retries=0)
        r = client.chat.completions.create(model="gpt", messages=MSG)  # type: ignore[arg-type]
        call = r.choices[0].message.tool_calls[0]  # type: ignore[index]
        assert r.choices[0].finish_reason == "tool_calls"
        assert call.id == "call_1" and call.function.name == "Bash"  # type: ignore[union-attr]
        assert call.function.arguments == '{"command": "uv run pytest -q"}'  # type: ignore[union-attr]
        stream = client.chat.completions.create(model="gpt", messages=MSG, stream=True,  # type: ignore[arg-type]
                                                stream_options={"include_usage": True})
        content, args, usage = "", "", None
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for choice in chunk.choices:
                content += choice.delta.content or ""
                for tc in choice.delta.tool_calls or []:
                    args += tc.function.arguments or ""  # type: ignore[union-attr]
        assert content == "Looking." and args == '{"pattern": "def health"}'
        assert usage is not None and usage.total_tokens > 0
        last = client.chat.completions.create(model="gpt", messages=MSG)  # type: ignore[arg-type]
        assert last.choices[0].message.content == "finished"
