"""`orchestrail runs` and `orchestrail replay` as a user runs them: real processes, a real
SQLite store, a run recorded by the real agent loop through `agents run`."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ORCHESTRAIL, ROOT

SAMPLE = ROOT / "examples" / "events" / "sample-run.jsonl"


def run(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRAIL_")}
    env["ORCHESTRAIL_STORE"] = f"sqlite:///{cwd / 'events.db'}"
    return subprocess.run([ORCHESTRAIL, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    out = run(tmp_path, "events", "append", "--file", str(SAMPLE))
    assert out.returncode == 0, out.stderr
    return tmp_path


def record_agent_run(tmp_path: Path, run_id: str) -> dict[str, object]:
    repo = tmp_path / f"repo-{run_id}"
    (repo / ".claude" / "agents").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "health-app" / "app.py", repo / "app.py")
    shutil.copy(ROOT / "examples" / "agents" / "backend-implementer.md",
                repo / ".claude" / "agents" / "backend-implementer.md")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    out = run(tmp_path, "agents", "run", "backend-implementer",
              "Add a /health endpoint and its test", "--provider", "script",
              "--script", str(ROOT / "examples" / "scripts" / "health-endpoint.yaml"),
              "--workspace", str(repo), "--run-id", run_id, "--json")
    assert out.returncode == 0, out.stderr
    summary: dict[str, object] = json.loads(out.stdout)
    return summary


def apply_retention(store_dir: Path) -> list[str]:
    """Retention as it runs 30 days from now (max age 7 days, run and task streams kept),
    through the store API in another process; the streams it removed."""
    script = (
        "import asyncio, datetime as d, json\n"
        "from eventstore.urls import open_store\n"
        "from eventstore.retention import RetentionPolicy\n"
        "async def main():\n"
        f"    s = await open_store('sqlite:///{store_dir / 'events.db'}')\n"
        "    later = d.datetime.now(d.UTC) + d.timedelta(days=30)\n"
        "    r = await s.apply_retention(RetentionPolicy(max_age=d.timedelta(days=7),\n"
        "        keep=('run-', 'task-')), dry_run=False, now=later)\n"
        "    print(json.dumps(sorted(x.stream for x in r.removed)))\n"
        "    await s.close()\n"
        "asyncio.run(main())\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRAIL_")}
    gone = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, env=env)
    assert gone.returncode == 0, gone.stderr
    removed: list[str] = json.loads(gone.stdout)
    return removed


def test_replay_json_of_a_real_recorded_run(store_dir: Path) -> None:
    summary = record_agent_run(store_dir, "run-cli")
    out = run(store_dir, "replay", "run-cli", "--format", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    [s] = doc["sessions"]
    assert s["status"] == "completed" and doc["run"]["status"] == "completed"
    calls = [(c["tool"], c["status"]) for t in s["turns"] for c in t["tool_calls"]]
    assert calls == [("Read", "ok"), ("Edit", "ok"), ("Write", "ok"), ("Bash", "ok"),
                     ("Bash", "denied"), ("Bash", "denied")]
    assert doc["run"]["totals"]["denials"] == summary["denials"] == 2
    assert s["usage"] == summary["usage"]
    text = run(store_dir, "replay", "--last")
    assert text.returncode == 0, text.stderr
    assert "rm -rf /" in text.stdout and "denied" in text.stdout
    assert "\x1b[" not in text.stdout  # not a TTY: no colour codes


def test_replay_formats_and_filters(store_dir: Path) -> None:
    md = run(store_dir, "replay", "demo-run-1", "--format", "markdown")
    assert md.returncode == 0 and md.stdout.startswith("# Replay of run `demo-run-1`")
    page = store_dir / "r.html"
    html = run(store_dir, "replay", "demo", "--format", "html", "-o", str(page))
    assert html.returncode == 0, html.stderr
    body = page.read_text()
    assert body.startswith("<!doctype html>") and "<details" in body
    assert "http://" not in body and "https://get" in body  # only the recorded command
    assert "<script" not in body and "<link" not in body
    at = json.loads(run(store_dir, "replay", "demo-run-1", "--at", "8", "--json").stdout)
    assert at["run"]["status"] == "running" and at["at"] == 8
    assert [c["tool_use_id"] for c in at["sessions"][0]["turns"][0]["tool_calls"]] == ["tu_1"]
    only = json.loads(run(store_dir, "replay", "demo-run-1", "--type", "tool.denied",
                          "--json").stdout)
    calls = [c for t in only["sessions"][0]["turns"] for c in t["tool_calls"]]
    calls += only["sessions"][0]["tool_calls_without_turn"]
    assert [c["tool_use_id"] for c in calls] == ["tu_2"]
    none = json.loads(run(store_dir, "replay", "demo-run-1", "--agent", "other",
                          "--json").stdout)
    assert none["sessions"] == [] and none["filter"] == {"agent": "other"}
    full = run(store_dir, "replay", "demo-run-1", "--full")
    assert "app = FastAPI()" in full.stdout


def test_unknown_run_id(store_dir: Path) -> None:
    out = run(store_dir, "replay", "demo-run-9")
    assert out.returncode == 1
    assert out.stderr.strip() == ("orchestrail: error: no run 'demo-run-9' in this store; "
                                  "closest: demo-run-1")
    assert out.stdout == ""


def test_unknown_types_in_store_are_shown(store_dir: Path) -> None:
    ev = {"stream": "session-S1", "type": "thought.recorded", "actor": "agent:x",
          "correlation_id": "demo-run-1", "data": {"text": "from the future", "v": 9}}
    add = subprocess.run([ORCHESTRAIL, "events", "append"], input=json.dumps(ev),
                         capture_output=True, text=True, cwd=store_dir, timeout=60,
                         env={**os.environ,
                              "ORCHESTRAIL_STORE": f"sqlite:///{store_dir / 'events.db'}"})
    assert add.returncode == 0, add.stderr
    out = run(store_dir, "replay", "demo-run-1")
    assert out.returncode == 0 and "thought.recorded" in out.stdout


def test_runs_listing_order_filters_and_last(store_dir: Path) -> None:
    record_agent_run(store_dir, "run-new")
    out = run(store_dir, "runs", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["id"] for r in rows] == ["run-new", "demo-run-1"]
    assert rows[1]["events"] == 15 and rows[1]["tokens"] == 5622
    assert rows[0]["agents"] == ["backend-implementer"] and rows[0]["status"] == "completed"
    last = json.loads(run(store_dir, "runs", "--last", "--json").stdout)
    assert [r["id"] for r in last] == ["run-new"]
    failed = json.loads(run(store_dir, "runs", "--status", "failed", "--json").stdout)
    assert failed == []
    since = json.loads(run(store_dir, "runs", "--since", "2026-11-23T10:00:30Z",
                           "--json").stdout)  # the sample run started at 10:00:00
    assert [r["id"] for r in since] == ["run-new"]
    table = run(store_dir, "runs")
    assert table.stdout.splitlines()[1].startswith("run-new")


def test_retention_removed_streams_marked_incomplete(store_dir: Path) -> None:
    out = run(store_dir, "store", "retention", "--help")
    assert out.returncode == 0
    # Remove the session stream the way retention does (whole stream + $retention record),
    # through the store API, then replay from the CLI.
    gone = apply_retention(store_dir)
    assert gone == ["session-S1"]
    out = run(store_dir, "replay", "demo-run-1", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert not doc["run"]["complete"]
    assert doc["incomplete"][0]["where"] == "session-S1"
    assert "retention" in doc["incomplete"][0]["reason"]
    assert [t["status"] for t in doc["tasks"]] == ["completed"]  # what exists is shown
    text = run(store_dir, "replay", "demo-run-1")
    assert "INCOMPLETE" in text.stdout and "removed by retention" in text.stdout
    listing = json.loads(run(store_dir, "runs", "--json").stdout)
    assert listing[0]["incomplete"] is True


def test_follow_prints_new_events_until_run_finished(tmp_path: Path) -> None:
    lines = SAMPLE.read_text().splitlines()
    head, tail = lines[:6], lines[6:]
    (tmp_path / "head.jsonl").write_text("\n".join(head) + "\n")
    assert run(tmp_path, "events", "append", "--file", str(tmp_path / "head.jsonl")
               ).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRAIL_")}
    env["ORCHESTRAIL_STORE"] = f"sqlite:///{tmp_path / 'events.db'}"
    proc = subprocess.Popen([ORCHESTRAIL, "replay", "demo-run-1", "--follow"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(1.5)
        (tmp_path / "tail.jsonl").write_text("\n".join(tail) + "\n")
        assert run(tmp_path, "events", "append", "--file", str(tmp_path / "tail.jsonl")
                   ).returncode == 0
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    followed = [ln for ln in out.splitlines() if ln.strip() and ln.lstrip()[0].isdigit()]
    types = [ln.split()[3] for ln in followed]
    assert types == [json.loads(x)["type"] for x in tail]
    assert types[-1] == "run.finished"


def test_replay_never_writes(store_dir: Path) -> None:
    db = store_dir / "events.db"
    before = sqlite3.connect(db).execute("SELECT count(*) FROM events").fetchone()
    assert run(store_dir, "replay", "demo-run-1", "--json").returncode == 0
    after = sqlite3.connect(db).execute("SELECT count(*) FROM events").fetchone()
    assert before == after == (15,)
