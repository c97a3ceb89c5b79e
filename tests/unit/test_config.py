"""orchestrail.yaml: lookup, overrides, and errors that name file, key and what is allowed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from eventstore.config import load_config
from eventstore.errors import ConfigError
from eventstore.urls import open_store


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_without_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCHESTRAIL_CONFIG", raising=False)
    monkeypatch.delenv("ORCHESTRAIL_STORE", raising=False)
    cfg = load_config(tmp_path)
    assert cfg.path is None
    assert cfg.store_url() == "sqlite:///.orchestrail/events.db"
    assert cfg.store.retention.infinite


def test_found_upwards_and_env_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCHESTRAIL_CONFIG", raising=False)
    monkeypatch.delenv("ORCHESTRAIL_STORE", raising=False)
    write(tmp_path / "orchestrail.yaml",
          "store:\n  url: file:///trail\n  retention:\n    max_age: 90d\n    keep: [run-]\n")
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    cfg = load_config(sub)
    assert cfg.path == (tmp_path / "orchestrail.yaml").resolve()
    assert cfg.root == tmp_path.resolve()
    assert cfg.store_url() == "file:///trail"
    assert cfg.store.retention.max_age == timedelta(days=90)
    monkeypatch.setenv("ORCHESTRAIL_STORE", "memory://")
    assert load_config(sub).store_url() == "memory://"


@pytest.mark.parametrize("text,expected", [
    ("store:\n  url: [1\n", r"orchestrail.yaml:\d+: invalid YAML"),
    ("store:\n  uri: x\n", r"orchestrail.yaml: store.uri: unknown key"),
    ("store:\n  fsync: sometimes\n", r"store.fsync: .*always, batch, never"),
    ("store:\n  retention:\n    max_age: soon\n", r"store.retention.max_age: .*invalid duration"),
    ("store:\n  retention:\n    max_streams: -1\n", r"store.retention.max_streams"),
    ("- a\n- b\n", r"the top level must be a mapping"),
])
def test_errors_name_file_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str,
                                  expected: str) -> None:
    monkeypatch.delenv("ORCHESTRAIL_CONFIG", raising=False)
    write(tmp_path / "orchestrail.yaml", text)
    with pytest.raises(ConfigError, match=expected):
        load_config(tmp_path)


def test_explicit_config_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg_file = write(tmp_path / "other.yaml", "store:\n  url: memory://\n")
    monkeypatch.setenv("ORCHESTRAIL_CONFIG", str(cfg_file))
    monkeypatch.delenv("ORCHESTRAIL_STORE", raising=False)
    assert load_config(tmp_path / "elsewhere").store_url() == "memory://"
    monkeypatch.setenv("ORCHESTRAIL_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="ORCHESTRAIL_CONFIG=.*missing.yaml: no such file"):
        load_config(tmp_path)


async def test_unknown_scheme_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown scheme 'mysql'.*sqlite:///"):
        await open_store("mysql://u:secret@h/db")
    with pytest.raises(ConfigError) as info:
        await open_store("mysql://u:secret@h/db")
    assert "secret" not in str(info.value)
