"""Suite-wide rules.

With ORCHESTRAIL_FAIL_ON_SKIP=1 (set by .ci/run) a skipped test fails the run: a suite
that needs a service must fail loudly when the service is missing, never pass silently.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
ORCHESTRAIL = str(Path(sys.executable).parent / "orchestrail")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("ORCHESTRAIL_FAIL_ON_SKIP") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and session.exitstatus == 0 and reporter is not None:
        reporter.write_line(
            f"FAILED: {skipped} test(s) were skipped; CI requires every suite to run "
            "(ORCHESTRAIL_FAIL_ON_SKIP=1)", red=True)
        session.exitstatus = 1
