"""``orchestrail.yaml``: where it is found, what it may say, and how errors read.

Lookup: ``ORCHESTRAIL_CONFIG`` (an explicit file) or the first ``orchestrail.yaml`` from
the working directory upwards; none means defaults. ``ORCHESTRAIL_STORE`` overrides
``store.url``. Relative paths in a store URL are resolved against the config file's
directory (or the working directory when there is no file), so a project behaves the
same from any subdirectory, as git does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from eventstore.errors import ConfigError
from eventstore.retention import RetentionPolicy

CONFIG_NAME = "orchestrail.yaml"
DEFAULT_STORE_URL = "sqlite:///.orchestrail/events.db"
ENV_CONFIG = "ORCHESTRAIL_CONFIG"
ENV_STORE = "ORCHESTRAIL_STORE"


class StoreSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = DEFAULT_STORE_URL
    retention: RetentionPolicy = Field(default_factory=RetentionPolicy)
    #: JSONL backend: ``always`` (fsync every append), ``batch`` (every 100 ms), ``never``.
    fsync: str = "always"

    @field_validator("fsync")
    @classmethod
    def _fsync(cls, v: str) -> str:
        if v not in ("always", "batch", "never"):
            raise ValueError(f"must be one of always, batch, never; got {v!r}")
        return v


class RedactSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    patterns: list[str] = Field(default_factory=list)


class Config(BaseModel):
    """The whole file. Sections of other parts (agents, orchestrator) are kept as-is."""

    model_config = ConfigDict(extra="allow")

    store: StoreSettings = Field(default_factory=StoreSettings)
    redact: RedactSettings = Field(default_factory=RedactSettings)

    #: Where the file was found (None: defaults only). Not part of the file.
    path: Path | None = Field(default=None, exclude=True)
    #: Directory relative store paths resolve against.
    root: Path = Field(default_factory=Path.cwd, exclude=True)

    def store_url(self) -> str:
        return os.environ.get(ENV_STORE) or self.store.url


def find_config(start: Path | None = None) -> Path | None:
    explicit = os.environ.get(ENV_CONFIG)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"{ENV_CONFIG}={explicit}: no such file")
        return path
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def _describe(err: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in err.get("loc", ())) or "(top level)"
    msg = str(err.get("msg", "invalid"))
    if err.get("type") == "extra_forbidden":
        msg = "unknown key"
    return f"{key}: {msg}"


def load_config(start: Path | None = None) -> Config:
    path = find_config(start)
    if path is None:
        return Config(root=(start or Path.cwd()).resolve())
    return parse_config_file(path)


def parse_config_file(path: Path) -> Config:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(raw).__name__}")
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        details = "; ".join(_describe(e) for e in exc.errors())  # type: ignore[arg-type]
        raise ConfigError(f"{path}: {details}") from None
    cfg.path = path.resolve()
    cfg.root = path.resolve().parent
    return cfg
