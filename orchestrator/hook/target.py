"""Where the hook writes: store URL, redaction settings and spool directory (stdlib only).

Same rules as ``eventstore.config`` (``ORCHESTRAIL_STORE`` > ``store.url`` of the first
``orchestrail.yaml`` from the working directory upwards, or ``ORCHESTRAIL_CONFIG`` >
the default SQLite file; relative paths against the config file's directory), without
pydantic. With no config file the root is ``$CLAUDE_PROJECT_DIR`` when Claude Code sets
it, so a session that ``cd``-ed into a subdirectory still records into one store.
PyYAML is imported only when a config file exists.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CONFIG_NAME = "orchestrail.yaml"
DEFAULT_STORE_URL = "sqlite:///.orchestrail/events.db"
SPOOL_NAME = "hook-spool.jsonl"


class Target:
    __slots__ = ("redact_enabled", "redact_patterns", "root", "url")

    def __init__(self, url: str, root: Path, redact_enabled: bool = True,
                 redact_patterns: list[str] | None = None) -> None:
        self.url = url
        self.root = root
        self.redact_enabled = redact_enabled
        self.redact_patterns = redact_patterns or []

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0].lower() if "://" in self.url else ""

    @property
    def spool_dir(self) -> Path:
        return self.root / ".orchestrail"

    def sqlite_path(self) -> tuple[Path, dict[str, str]]:
        """``sqlite:///rel`` is relative to the root, ``sqlite:////abs`` absolute."""
        from urllib.parse import parse_qs

        rest = self.url.split("://", 1)[1]
        if rest.startswith("/"):
            rest = rest[1:]
        rest, _, query = rest.partition("?")
        path = Path(rest)
        if not path.is_absolute():
            path = self.root / path
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        return path, params


def _find_config(start: Path) -> Path | None:
    explicit = os.environ.get("ORCHESTRAIL_CONFIG")
    if explicit:
        return Path(explicit)
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def resolve() -> Target:
    """Raises (OSError, yaml errors, ValueError) on a broken config: the caller spools."""
    cwd = Path.cwd()
    cfg_path = _find_config(cwd)
    raw: dict[str, Any] = {}
    if cfg_path is not None:
        import yaml

        loaded = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{cfg_path}: the top level must be a mapping")
        raw = loaded or {}
        root = cfg_path.resolve().parent
    else:
        project = os.environ.get("CLAUDE_PROJECT_DIR")
        root = Path(project) if project and Path(project).is_dir() else cwd
    store: dict[str, Any] = raw["store"] if isinstance(raw.get("store"), dict) else {}
    redact: dict[str, Any] = raw["redact"] if isinstance(raw.get("redact"), dict) else {}
    url = os.environ.get("ORCHESTRAIL_STORE") or str(store.get("url") or DEFAULT_STORE_URL)
    patterns = redact.get("patterns") or []
    return Target(url=url, root=root, redact_enabled=bool(redact.get("enabled", True)),
                  redact_patterns=[str(p) for p in patterns] if isinstance(patterns, list)
                  else [])
