"""Issue 4's "show" scenario, shared by the tests that run it on each provider: the example
app under git with the example backend-implementer, and the trail it must leave."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: (type, tool) of every tool/agent event, in order: read, edit, write, pytest, two denials.
STEPS = [
    ("agent.started", None),
    ("tool.requested", "Read"), ("tool.completed", "Read"),
    ("tool.requested", "Edit"), ("tool.completed", "Edit"),
    ("tool.requested", "Write"), ("tool.completed", "Write"),
    ("tool.requested", "Bash"), ("tool.completed", "Bash"),
    ("tool.requested", "Bash"), ("tool.denied", "Bash"),
    ("tool.requested", "Bash"), ("tool.denied", "Bash"),
    ("agent.finished", None),
]


def health_repo(tmp_path: Path) -> Path:
    """A scratch git repo with examples/health-app and .claude/agents/backend-implementer.md."""
    repo = tmp_path / "repo"
    (repo / ".claude" / "agents").mkdir(parents=True)
    shutil.copy(ROOT / "examples/health-app/app.py", repo / "app.py")
    shutil.copy(ROOT / "examples/agents/backend-implementer.md",
                repo / ".claude/agents/backend-implementer.md")
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=repo, check=True)
    return repo
