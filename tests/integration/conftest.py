"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def claude_bin() -> str:
    """The real ``claude`` binary (installed once with npm if needed). A missing binary
    fails the test, never skips it: CI must run these."""
    from tests.fakes.claude_binary import ensure_claude_binary

    try:
        return ensure_claude_binary()
    except Exception as exc:
        pytest.fail(f"the claude binary is required for this test: {exc}")
