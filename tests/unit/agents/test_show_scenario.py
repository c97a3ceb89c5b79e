"""Issue 4's "show": backend-implementer adds /health in a scratch git repo on the script
provider, through the real CLI (a subprocess) and a real SQLite store."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from eventstore.urls import open_store

ROOT = Path(__file__).resolve().parents[3]
ORCHESTRAIL = str(Path(sys.executable).parent / "orchestrail")


def test_show_scenario(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".claude" / "agents").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "health-app" / "app.py", repo / "app.py")
    shutil.copy(ROOT / "examples" / "agents" / "backend-implementer.md",
                repo / ".claude" / "agents" / "backend-implementer.md")
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=repo, check=True)
    db = tmp_path / "events.db"
    env = {**os.environ, "ORCHESTRAIL_STORE": f"sqlite:///{db}"}
    proc = subprocess.run(
        [ORCHESTRAIL, "agents", "run", "backend-implementer",
         "Add a /health endpoint and its test", "--provider", "script",
         "--script", str(ROOT / "examples" / "scripts" / "health-endpoint.yaml"),
         "--workspace", str(repo), "--run-id", "run-show", "--json"],
        capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["status"] == "completed" and summary["denials"] == 2
    assert "denied" in proc.stderr and "Bash: rm -rf /" in proc.stderr
    assert '"/health": health' in (repo / "app.py").read_text()
    assert (repo / "tests" / "test_health.py").is_file()

    async def trail() -> list[object]:
        store = await open_store(f"sqlite:///{db}")
        try:
            assert (await store.verify()).ok
            return [e async for e in store.read_stream(summary["stream"])]
        finally:
            await store.close()

    events = asyncio.run(trail())
    steps = [(e.type, e.data.get("tool")) for e in events  # type: ignore[attr-defined]
             if e.type.startswith(("tool.", "agent."))]  # type: ignore[attr-defined]
    assert steps == [
        ("agent.started", None),
        ("tool.requested", "Read"), ("tool.completed", "Read"),
        ("tool.requested", "Edit"), ("tool.completed", "Edit"),
        ("tool.requested", "Write"), ("tool.completed", "Write"),
        ("tool.requested", "Bash"), ("tool.completed", "Bash"),
        ("tool.requested", "Bash"), ("tool.denied", "Bash"),
        ("tool.requested", "Bash"), ("tool.denied", "Bash"),
        ("agent.finished", None)]
    started = events[0]
    assert started.data["agent"] == "backend-implementer"  # type: ignore[attr-defined]
    assert started.causation_id is None  # type: ignore[attr-defined]
    for e in events[1:]:
        assert e.causation_id == started.id  # type: ignore[attr-defined]
        assert e.correlation_id == "run-show"  # type: ignore[attr-defined]
    versions = [e.version for e in events]  # type: ignore[attr-defined]
    assert versions == list(range(len(events)))
    tests_run = next(e for e in events if e.type == "tool.completed"  # type: ignore[attr-defined]
                 and e.data["tool"] == "Bash")  # type: ignore[attr-defined]
    assert tests_run.data["exit_code"] == 0 and "2 passed" in tests_run.data["output"]  # type: ignore[attr-defined]
    edits = [e for e in events if e.type == "tool.completed"  # type: ignore[attr-defined]
             and e.data["files"]]  # type: ignore[attr-defined]
    assert [f["path"] for e in edits for f in e.data["files"]] == [  # type: ignore[attr-defined]
        "app.py", "tests/test_health.py"]
    denied = [e.data for e in events if e.type == "tool.denied"]  # type: ignore[attr-defined]
    assert "rm -rf /" in str(denied[0]) and "curl" in str(denied[1])
