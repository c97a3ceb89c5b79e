"""Model aliases and prices: ``sonnet`` means a different id to each provider, and cost is ours.

A subagent file says ``model: sonnet`` (or ``opus``, ``haiku``, ``inherit``, or a full id).
Which id that is depends on the provider: the Messages API wants ``claude-sonnet-4-5``, an
OpenAI-compatible server wants whatever it serves, and the ``claude`` binary understands
the alias itself. The built-in table below is a starting point; ``orchestrail.yaml``
overrides any entry::

    models:
      default: sonnet                 # what ``inherit`` means at the top of a run
      aliases:
        anthropic: {sonnet: claude-sonnet-4-5-20250929}
        openai: {sonnet: qwen2.5-coder:32b, haiku: llama3.1:8b}
      prices:                         # USD per million tokens
        qwen2.5-coder:32b: {input_per_mtok: 0, output_per_mtok: 0}

Cost is computed here from a response's usage and the price table, never trusted from a
provider (except the ``claude`` binary's own estimate, recorded as such). A model with no
known price has cost ``None``, not ``0``: an audit must not report an unpriced run as free.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.errors import AgentError

if TYPE_CHECKING:
    from agents.providers.base import Usage
    from eventstore.config import Config

ALIASES = ("sonnet", "opus", "haiku")
INHERIT = "inherit"

#: Built-in alias table per provider. ``claude-code`` passes aliases through: the binary
#: resolves them itself (and knows the newest ids better than a table here).
DEFAULT_ALIASES: dict[str, dict[str, str]] = {
    "anthropic": {"sonnet": "claude-sonnet-5", "opus": "claude-opus-4-8",
                  "haiku": "claude-haiku-4-5"},
    "claude-code": {"sonnet": "sonnet", "opus": "opus", "haiku": "haiku"},
    "openai": {"sonnet": "gpt-4.1", "opus": "gpt-4.1", "haiku": "gpt-4.1-mini"},
}

DEFAULT_MODEL = "sonnet"


class ModelConfigError(AgentError, ValueError):
    """The ``models`` section of orchestrail.yaml, or a model name, is invalid."""


class Price(BaseModel):
    """USD per million tokens. Unset cache prices fall back to the input price."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cache_read_per_mtok: float | None = Field(default=None, ge=0)
    cache_write_per_mtok: float | None = Field(default=None, ge=0)


def _p(i: float, o: float, cr: float | None = None, cw: float | None = None) -> Price:
    return Price(input_per_mtok=i, output_per_mtok=o, cache_read_per_mtok=cr,
                 cache_write_per_mtok=cw)


#: List prices (USD/MTok) at the time of writing; override or extend in orchestrail.yaml.
DEFAULT_PRICES: dict[str, Price] = {
    **dict.fromkeys(("claude-opus-4-8", "claude-opus-4-7", "claude-opus-4-6",
                     "claude-opus-4-5"), _p(5, 25, 0.5, 6.25)),
    **dict.fromkeys(("claude-opus-4-1", "claude-opus-4"), _p(15, 75, 1.5, 18.75)),
    **dict.fromkeys(("claude-sonnet-5", "claude-sonnet-4-6", "claude-sonnet-4-5",
                     "claude-sonnet-4"), _p(3, 15, 0.3, 3.75)),
    "claude-haiku-4-5": _p(1, 5, 0.1, 1.25),
    "claude-3-5-haiku": _p(0.8, 4, 0.08, 1.0),
    "gpt-4.1": _p(2, 8, 0.5),
    "gpt-4.1-mini": _p(0.4, 1.6, 0.1),
    "gpt-4o": _p(2.5, 10, 1.25),
    "gpt-4o-mini": _p(0.15, 0.6, 0.075),
}


class ModelSettings(BaseModel):
    """The ``models:`` section of orchestrail.yaml."""

    model_config = ConfigDict(extra="forbid")

    default: str = DEFAULT_MODEL
    aliases: dict[str, dict[str, str]] = Field(default_factory=dict)
    prices: dict[str, Price] = Field(default_factory=dict)


def _describe(err: Any) -> str:
    key = ".".join(str(p) for p in err.get("loc", ()))
    msg = "unknown key" if err.get("type") == "extra_forbidden" else str(err.get("msg"))
    return f"models.{key}: {msg}" if key else f"models: {msg}"


class ModelCatalog:
    """Aliases and prices after merging the built-ins with orchestrail.yaml."""

    def __init__(self, settings: ModelSettings | None = None, *, source: Path | None = None):
        settings = settings or ModelSettings()
        self.source = source
        self.default = settings.default
        self.aliases: dict[str, dict[str, str]] = {p: dict(m) for p, m in DEFAULT_ALIASES.items()}
        for provider, table in settings.aliases.items():
            self.aliases.setdefault(provider, {}).update(table)
        self.prices: dict[str, Price] = {**DEFAULT_PRICES, **settings.prices}

    @classmethod
    def from_config(cls, config: Config | None = None) -> ModelCatalog:
        """Read and validate ``models:``; errors name the file and the key."""
        if config is None:
            from eventstore.config import load_config

            config = load_config()
        raw = (config.model_extra or {}).get("models")
        where = str(config.path) if config.path else "orchestrail.yaml"
        if raw is None:
            return cls(source=config.path)
        if not isinstance(raw, dict):
            raise ModelConfigError(f"{where}: models: must be a mapping, got "
                                   f"{type(raw).__name__}")
        try:
            settings = ModelSettings.model_validate(raw)
        except ValidationError as exc:
            details = "; ".join(_describe(e) for e in exc.errors())
            raise ModelConfigError(f"{where}: {details}") from None
        return cls(settings, source=config.path)

    def alias_names(self) -> frozenset[str]:
        """Every alias any provider knows (for definition validation)."""
        return frozenset(a for table in self.aliases.values() for a in table)

    def resolve(self, model: str | None, provider: str, *, parent: str | None = None) -> str:
        """A definition's ``model`` to the full id ``provider`` is called with.

        ``inherit`` (or nothing) takes the parent session's model, else the configured
        default (itself possibly an alias). A full id passes through unchanged.
        """
        name = (model or INHERIT).strip()
        if name == INHERIT:
            name = parent or self.default
            if name == INHERIT:
                raise ModelConfigError(f"{self._where()}: models.default cannot be 'inherit'")
        table = self.aliases.get(provider)
        if table is None:  # script, replay: the model id is a label, aliases pass through
            table = {a: a for a in self.alias_names() | set(ALIASES)}
        if name in table:
            return table[name]
        from agents.definition import check_model

        problem = check_model(name, self.alias_names())
        if problem:
            raise ModelConfigError(problem)
        if name in self.alias_names() or name in ALIASES:
            raise ModelConfigError(
                f"model alias {name!r} has no id for provider {provider!r}: set "
                f"models.aliases.{provider}.{name} in {self._where()}")
        return name

    def price(self, model: str) -> Price | None:
        """Exact id first, then the longest known prefix (``claude-sonnet-4-5-20250929``
        and ``claude-opus-4-8[1m]`` are priced as their family)."""
        base = model.split("[", 1)[0]
        for key in (model, base):
            if key in self.prices:
                return self.prices[key]
        best = max((k for k in self.prices if base.startswith(k + "-")), key=len, default=None)
        return self.prices[best] if best else None

    def cost(self, model: str, usage: Usage) -> float | None:
        """USD for one response, or None when the model has no known price."""
        price = self.price(model)
        if price is None:
            return None
        cache_read = price.cache_read_per_mtok
        cache_write = price.cache_write_per_mtok
        total = (usage.input_tokens * price.input_per_mtok
                 + usage.output_tokens * price.output_per_mtok
                 + usage.cache_read_input_tokens * (
                     price.input_per_mtok if cache_read is None else cache_read)
                 + usage.cache_creation_input_tokens * (
                     price.input_per_mtok if cache_write is None else cache_write))
        return round(total / 1_000_000, 8)

    def _where(self) -> str:
        return str(self.source) if self.source else "orchestrail.yaml"
