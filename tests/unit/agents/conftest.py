"""Fixtures shared by the agent-runtime tests (test files with their own ``ws`` override it)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """A workspace holding one small app file."""
    p = tmp_path / "ws"
    p.mkdir()
    (p / "app.py").write_text("print('hi')\n")
    return p
