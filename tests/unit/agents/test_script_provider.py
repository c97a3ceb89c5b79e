"""The script provider: YAML turns, matching, repeats, errors naming file and turn."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.providers import UnknownProvider, get_provider
from agents.providers.base import Message, ModelRequest, TransientProviderError
from agents.providers.script import ScriptError, ScriptProvider


def req(text: str = "hello", n_assistant: int = 0) -> ModelRequest:
    msgs = [Message(role="user", content=[{"type": "text", "text": text}])]
    return ModelRequest(model="m", system="s", messages=msgs)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "turns.yaml"
    p.write_text(text)
    return p


async def test_turns_in_order_with_tool_calls(tmp_path: Path) -> None:
    p = write(tmp_path, """
model: demo-model
usage: {input_tokens: 10, output_tokens: 2}
turns:
  - text: reading
    tool_calls:
      - {name: Read, input: {file_path: app.py}}
  - "plain string turn"
""")
    prov = get_provider("script", p)
    r1 = await prov.complete(req())
    assert r1.stop_reason == "tool_use" and r1.model == "demo-model"
    assert r1.content == [{"type": "text", "text": "reading"},
                          {"type": "tool_use", "id": "toolu_1_1_1", "name": "Read",
                           "input": {"file_path": "app.py"}}]
    assert r1.usage.input_tokens == 10
    r2 = await prov.complete(req())
    assert r2.content == [{"type": "text", "text": "plain string turn"}]
    assert r2.stop_reason == "end_turn"
    with pytest.raises(ScriptError, match=r"turns.yaml: no script turn left for model call 3"):
        await prov.complete(req())


async def test_match_and_repeat(tmp_path: Path) -> None:
    prov = ScriptProvider(turns=[
        {"match": "tests? passed", "text": "great"},
        {"repeat": 2, "text": "again"},
        {"repeat": True, "match": "^loop$", "text": "forever"},
    ])
    assert (await prov.complete(req("x"))).content[0]["text"] == "again"
    assert (await prov.complete(req("3 tests passed"))).content[0]["text"] == "great"
    assert (await prov.complete(req("x"))).content[0]["text"] == "again"
    for _ in range(5):
        assert (await prov.complete(req("loop"))).content[0]["text"] == "forever"
    with pytest.raises(ScriptError):
        await prov.complete(req("x"))


async def test_error_turns() -> None:
    prov = ScriptProvider(turns=[{"error": {"message": "slow down", "status": 429,
                                            "transient": True, "retry_after": 2}}])
    with pytest.raises(TransientProviderError) as info:
        await prov.complete(req())
    assert info.value.status == 429 and info.value.retry_after == 2
    assert "turn 1: slow down" in str(info.value)


@pytest.mark.parametrize(("text", "message"), [
    ("turns: [", r"turns.yaml:\d+: "),
    ("[]", "non-empty list of turns"),
    ("turns: [{txt: hi}]", "turn 1: unknown keys \\['txt'\\]"),
    ("- text: ok\n- tool_calls: [{input: {}}]", "turn 2: tool call 1: needs a name"),
    ("- text: ok\n- {}", "turn 2: a turn needs text"),
    ("- {text: ok, repeat: 0}", "turn 1: repeat must be"),
    ("- {text: ok, match: '('}", "turn 1: match is not a valid regex"),
    ("- {text: [1]}", "turn 1: text must be a string"),
    ("- 42", "turn 1: a turn is a mapping"),
    ("- {raw: {content: 3}}", "turn 1: raw must be"),
    ("- {text: x, usage: {input_tokens: lots}}", "turn 1: invalid usage"),
    ("bogus: 1\nturns: [hi]", "unknown top-level keys"),
])
def test_malformed_scripts_name_file_and_turn(tmp_path: Path, text: str, message: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ScriptError, match=message) as info:
        ScriptProvider(p)
    assert str(p) in str(info.value)


def test_missing_file_and_unknown_provider(tmp_path: Path) -> None:
    with pytest.raises(ScriptError, match="cannot read script"):
        ScriptProvider(tmp_path / "nope.yaml")
    with pytest.raises(ScriptError, match="needs a script file"):
        ScriptProvider()
    with pytest.raises(UnknownProvider, match="unknown provider 'gpt'"):
        get_provider("gpt")


def test_example_script_loads() -> None:
    root = Path(__file__).resolve().parents[3]
    prov = ScriptProvider(root / "examples" / "scripts" / "health-endpoint.yaml")
    assert len(prov.turns) >= 4
