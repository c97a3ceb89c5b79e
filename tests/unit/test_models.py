"""Model aliases and prices: resolution per provider, overrides from orchestrail.yaml, cost."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.models import ModelCatalog, ModelConfigError
from agents.providers.base import Usage
from eventstore.config import parse_config_file


def _catalog(tmp_path: Path, text: str) -> ModelCatalog:
    f = tmp_path / "orchestrail.yaml"
    f.write_text(text)
    return ModelCatalog.from_config(parse_config_file(f))


def test_builtin_aliases_per_provider() -> None:
    c = ModelCatalog()
    assert c.resolve("sonnet", "anthropic") == "claude-sonnet-5"
    assert c.resolve("haiku", "anthropic") == "claude-haiku-4-5"
    assert c.resolve("opus", "claude-code") == "opus"  # the binary resolves its own aliases
    assert c.resolve("claude-opus-4-1-20250805", "anthropic") == "claude-opus-4-1-20250805"
    assert c.resolve("llama3.1:8b", "openai") == "llama3.1:8b"
    assert c.resolve("sonnet", "script") == "sonnet"


def test_inherit_takes_the_parent_then_the_default() -> None:
    c = ModelCatalog()
    assert c.resolve("inherit", "anthropic", parent="claude-opus-4-8") == "claude-opus-4-8"
    assert c.resolve("inherit", "anthropic", parent="haiku") == "claude-haiku-4-5"
    assert c.resolve("inherit", "anthropic") == "claude-sonnet-5"
    assert c.resolve(None, "anthropic") == "claude-sonnet-5"


def test_unknown_alias_is_a_clear_error() -> None:
    with pytest.raises(ModelConfigError, match=r"unknown model alias 'sonet'.*did you mean "
                                               "'sonnet'"):
        ModelCatalog().resolve("sonet", "anthropic")


def test_config_overrides_aliases_default_and_prices(tmp_path: Path) -> None:
    c = _catalog(tmp_path, """
models:
  default: haiku
  aliases:
    openai: {sonnet: qwen2.5-coder:32b, fast: llama3.1:8b}
    anthropic: {sonnet: claude-sonnet-4-5-20250929}
  prices:
    qwen2.5-coder:32b: {input_per_mtok: 0.5, output_per_mtok: 1.0}
""")
    assert c.resolve("sonnet", "openai") == "qwen2.5-coder:32b"
    assert c.resolve("fast", "openai") == "llama3.1:8b"
    assert c.resolve("sonnet", "anthropic") == "claude-sonnet-4-5-20250929"
    assert c.resolve("inherit", "openai") == "gpt-4.1-mini"  # default haiku, for openai
    assert "fast" in c.alias_names()
    with pytest.raises(ModelConfigError, match=r"no id for provider 'anthropic'.*"
                                               r"models.aliases.anthropic.fast"):
        c.resolve("fast", "anthropic")
    assert c.cost("qwen2.5-coder:32b", Usage(input_tokens=2_000_000,
                                             output_tokens=1_000_000)) == pytest.approx(2.0)


@pytest.mark.parametrize(("text", "message"), [
    ("models: [1, 2]\n", "models: must be a mapping"),
    ("models:\n  prices:\n    m: {input_per_mtok: 1}\n",
     "models.prices.m.output_per_mtok: Field required"),
    ("models:\n  prices:\n    m: {input_per_mtok: -1, output_per_mtok: 1}\n",
     "models.prices.m.input_per_mtok"),
    ("models:\n  alias: {}\n", "models.alias: unknown key"),
])
def test_bad_models_section_names_file_and_key(tmp_path: Path, text: str,
                                               message: str) -> None:
    with pytest.raises(ModelConfigError) as info:
        _catalog(tmp_path, text)
    assert str(tmp_path / "orchestrail.yaml") in str(info.value)
    assert message in str(info.value)


def test_cost_uses_every_usage_field_and_family_prefixes() -> None:
    c = ModelCatalog()
    u = Usage(input_tokens=1_000_000, output_tokens=1_000_000,
              cache_read_input_tokens=1_000_000, cache_creation_input_tokens=1_000_000)
    assert c.cost("claude-sonnet-5", u) == pytest.approx(3 + 15 + 0.3 + 3.75)
    assert c.cost("claude-haiku-4-5-20251001", u) == pytest.approx(1 + 5 + 0.1 + 1.25)
    assert c.cost("claude-opus-4-8[1m]", u) == pytest.approx(5 + 25 + 0.5 + 6.25)
    # gpt-4.1 has no cache-write price: it falls back to the input price.
    assert c.cost("gpt-4.1", u) == pytest.approx(2 + 8 + 0.5 + 2)


def test_unknown_price_is_none_not_zero() -> None:
    assert ModelCatalog().cost("my-local-model", Usage(input_tokens=5)) is None
    assert ModelCatalog().cost("claude-sonnet-5", Usage()) == 0.0


def test_recorded_event_fast_constructor_equals_model_construct() -> None:
    """``recorded_event`` bypasses ``model_construct``; the result must be the same model."""
    from datetime import UTC, datetime

    from eventstore.model import RecordedEvent, recorded_event

    now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    fields = dict(id="e1", stream="s-1", version=2, position=7, type="tool.completed",
                  data={"a": [1]}, metadata={}, actor="agent:x", correlation_id="r",
                  causation_id=None, occurred_at=now, recorded_at=now, prev_hash=None,
                  hash="ab" * 32)
    fast = recorded_event(**fields)  # type: ignore[arg-type]
    slow = RecordedEvent.model_construct(**fields)
    assert fast == slow
    assert repr(fast) == repr(slow)
    assert fast.model_dump() == slow.model_dump()
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.__pydantic_extra__ == slow.__pydantic_extra__
    assert fast.__pydantic_private__ == slow.__pydantic_private__
    assert fast.model_copy(update={"position": 8}).position == 8
    again = recorded_event(**fields)  # type: ignore[arg-type]
    assert again.model_fields_set is not fast.model_fields_set  # one set per event
