"""Model providers behind one interface (``agents.providers.base.Provider``).

Imported lazily by name (``get_provider``) so an SDK loads only when its provider is used.
``PROVIDERS`` is a plain ``name -> "module:Class"`` table: adding a provider is one line.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from agents.errors import AgentError

PROVIDERS: dict[str, str] = {
    "script": "agents.providers.script:ScriptProvider",
    "replay": "agents.providers.replay:ReplayProvider",
    "anthropic": "agents.providers.anthropic:AnthropicProvider",
    "openai": "agents.providers.openai:OpenAIProvider",
    "claude-code": "agents.providers.claude_code:ClaudeCodeRunner",
}


class UnknownProvider(AgentError, ValueError):
    """No provider has this name."""


def provider_class(name: str) -> Any:
    """The class registered as ``name``, imported on first use."""
    target = PROVIDERS.get(name)
    if target is None:
        raise UnknownProvider(f"unknown provider {name!r}: use one of "
                              f"{', '.join(sorted(PROVIDERS))}")
    module, attr = target.split(":")
    try:
        return getattr(import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownProvider(f"provider {name!r} is not available ({target}: {exc})") from None


def get_provider(name: str, /, *args: Any, **kwargs: Any) -> Any:
    """Instantiate the provider called ``name`` with the given arguments."""
    return provider_class(name)(*args, **kwargs)


__all__ = ["PROVIDERS", "UnknownProvider", "get_provider", "provider_class"]
