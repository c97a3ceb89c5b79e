"""`orchestrail audit` as a reviewer runs it: real processes, a real SQLite store, a run
recorded by the real agent loop (`agents run --provider script`) and a richer run written
through `events append` (two agents, tasks, approvals, a model retry, a workspace diff, an
event type from a newer version). The JSON is validated against docs/audit.schema.json and
the HTML page is rendered by a real headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.conftest import ROOT
from tests.integration.test_replay_cli import SAMPLE, apply_retention, record_agent_run, run

SCHEMA = json.loads((ROOT / "docs" / "audit.schema.json").read_text())
PATCH = "--- a/app.py\n+++ b/app.py\n@@ -1 +1,2 @@\n ROUTES = {}\n+# health\n"


def validate(doc: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(doc)]
    assert errors == []


def chromium() -> str:
    """The headless browser; the test fails (never skips) without it (.ci/run installs it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and Path("/usr/bin/chromium").exists():
        found = "/usr/bin/chromium"
    if found is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium (.ci/run does)")
    return found


def _ev(stream: str, type_: str, at: str, data: dict[str, Any], actor: str,
        run_id: str = "audit-rich") -> dict[str, Any]:
    return {"stream": stream, "type": type_, "data": data, "actor": actor,
            "correlation_id": run_id, "occurred_at": f"2026-11-20T09:{at}Z"}


def rich_events() -> list[dict[str, Any]]:
    """Two agents on two tasks: everything a reviewer should see, one of each."""
    o, a, b = "orchestrator", "agent:implementer", "agent:reviewer"
    sa, sb = "session-SA", "session-SB"
    return [
        _ev("run-audit-rich", "run.started", "00:00", {"tasks": ["T1", "T2"]}, o),
        _ev("task-T1", "task.created", "00:01", {"title": "Add health", "agent": "implementer"},
            o),
        _ev("task-T2", "task.created", "00:01", {"title": "Review", "agent": "reviewer"}, o),
        _ev("run-audit-rich", "task.dispatched", "00:02",
            {"task_id": "T1", "agent": "implementer", "session_id": "SA", "attempt": 1}, o),
        _ev(sa, "agent.started", "00:03", {
            "agent": "implementer", "model": "m-large", "provider": "script",
            "definition_hash": "d" * 64, "definition_source": ".claude/agents/impl.md",
            "permission_mode": "default", "allowed_tools": ["Read", "Edit", "Bash"],
            "tools": ["Read", "Edit", "Bash(pytest:*)"], "disallowed_tools": ["Write"]}, a),
        _ev(sa, "model.called", "00:04", {"turn": 1, "model": "m-large", "attempt": 1}, a),
        _ev(sa, "model.failed", "00:05", {"turn": 1, "attempt": 1, "error": "529 overloaded",
                                          "will_retry": True, "delay_s": 1}, a),
        _ev(sa, "model.called", "00:06", {"turn": 1, "model": "m-large", "attempt": 2}, a),
        _ev(sa, "model.responded", "00:08", {"turn": 1, "model": "m-large", "cost_usd": 0.02,
                                             "usage": {"input_tokens": 1000,
                                                       "output_tokens": 100}}, a),
        _ev(sa, "tool.requested", "00:09", {"turn": 1, "tool_use_id": "e1", "tool": "Edit",
                                            "input": {"file_path": "app.py"}}, a),
        _ev(sa, "tool.completed", "00:10", {"turn": 1, "tool_use_id": "e1", "tool": "Edit",
                                            "output": "edited", "files": [{
                                                "path": "app.py", "action": "modified",
                                                "sha256": "a" * 64, "bytes": 42}]}, a),
        _ev(sa, "tool.requested", "00:11", {"turn": 1, "tool_use_id": "b1", "tool": "Bash",
                                            "input": {"command": "pytest -q"}}, a),
        _ev(sa, "tool.completed", "00:15", {"turn": 1, "tool_use_id": "b1", "tool": "Bash",
                                            "output": "1 failed", "is_error": True,
                                            "exit_code": 1, "output_sha256": "f" * 64,
                                            "duration_ms": 4000}, a),
        _ev(sa, "tool.requested", "00:16", {"turn": 1, "tool_use_id": "w1", "tool": "WebFetch",
                                            "input": {"url": "https://example.com/x"}}, a),
        _ev(sa, "tool.denied", "00:16", {"turn": 1, "tool_use_id": "w1", "tool": "WebFetch",
                                         "rule": "WebFetch", "reason": "not in the agent's "
                                         "tools"}, a),
        _ev(sa, "tool.requested", "00:17", {"turn": 1, "tool_use_id": "g1", "tool": "Bash",
                                            "input": {"command": "git push --force"}}, a),
        _ev(sa, "approval.requested", "00:17", {"tool_use_id": "g1", "rule": "Bash(git push:*)",
                                                "reason": "push to the remote?"}, o),
        _ev(sa, "approval.resolved", "00:20", {"tool_use_id": "g1", "approved": False,
                                               "source": "user:ana", "reason": "not now"},
            "user:ana"),
        _ev(sa, "tool.denied", "00:20", {"turn": 1, "tool_use_id": "g1", "tool": "Bash",
                                         "rule": "Bash(git push:*)",
                                         "reason": "rejected by user:ana"}, a),
        _ev(sa, "workspace.diff", "00:21", {"patch": PATCH, "files": [{"path": "app.py"}],
                                            "patch_sha256": "c" * 64}, o),
        _ev(sa, "agent.finished", "00:22", {"status": "completed", "cost_usd": 0.02,
                                            "usage": {"input_tokens": 1000,
                                                      "output_tokens": 100}}, a),
        _ev("task-T1", "task.completed", "00:23", {"result": "done"}, o),
        _ev("run-audit-rich", "task.dispatched", "00:24",
            {"task_id": "T2", "agent": "reviewer", "session_id": "SB", "attempt": 1}, o),
        _ev(sb, "agent.started", "00:25", {"agent": "reviewer", "model": "m-small",
                                           "provider": "script",
                                           "allowed_tools": ["Read", "Bash"]}, b),
        _ev(sb, "model.called", "00:26", {"turn": 1, "model": "m-small"}, b),
        _ev(sb, "model.responded", "00:27", {"turn": 1, "model": "m-small", "cost_usd": 0.001,
                                             "usage": {"input_tokens": 300,
                                                       "output_tokens": 30}}, b),
        _ev(sb, "tool.requested", "00:28", {"turn": 1, "tool_use_id": "d1", "tool": "Bash",
                                            "input": {"command": "make deploy"}}, b),
        _ev(sb, "approval.requested", "00:28", {"tool_use_id": "d1", "rule": "Bash(make:*)",
                                                "reason": "deploy?"}, o),
        _ev(sb, "approval.resolved", "00:30", {"tool_use_id": "d1", "approved": True,
                                               "source": "user:bo"}, "user:bo"),
        _ev(sb, "tool.completed", "00:40", {"turn": 1, "tool_use_id": "d1", "tool": "Bash",
                                            "output": "deployed", "exit_code": 0,
                                            "duration_ms": 10000}, b),
        _ev(sb, "thought.recorded", "00:41", {"text": "from a newer writer", "v": 9}, b),
        _ev(sb, "agent.failed", "00:42", {"status": "failed", "error": "budget exceeded",
                                          "error_kind": "budget", "cost_usd": 0.001}, b),
        _ev("task-T2", "task.failed", "00:43", {"error": "review did not finish"}, o),
        _ev("run-audit-rich", "run.finished", "00:44", {"status": "failed"}, o),
    ]


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    events = tmp_path / "rich.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in rich_events()))
    for path in (SAMPLE, events):
        out = run(tmp_path, "events", "append", "--file", str(path))
        assert out.returncode == 0, out.stderr
    return tmp_path


def audit_json(store_dir: Path, *args: str) -> dict[str, Any]:
    out = run(store_dir, "audit", *args, "--format", "json")
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = json.loads(out.stdout)
    validate(doc)
    return doc


def test_audit_of_a_real_recorded_run(store_dir: Path) -> None:
    record_agent_run(store_dir, "run-real")
    doc = audit_json(store_dir, "run-real")
    s = doc["summary"]
    assert (s["runs"], s["status"], s["agents"]) == (1, "completed", ["backend-implementer"])
    assert s["denials"] == 2 and s["integrity"] == "intact" and s["complete"]
    [agent] = doc["agents"]
    assert agent["definition_hash"] and agent["allowed_tools"]
    used = {t["tool"]: (t["calls"], t["denied"], t["allowed_by_definition"])
            for t in agent["tools_used"]}
    assert used == {"Read": (1, 0, True), "Edit": (1, 0, True), "Write": (1, 0, True),
                    "Bash": (3, 2, True)}
    assert [(c["tool"], c["status"]) for c in agent["activity"]] == [
        ("Read", "ok"), ("Edit", "ok"), ("Write", "ok"), ("Bash", "ok"), ("Bash", "denied"),
        ("Bash", "denied")]
    assert [(c["command"], c["exit_code"]) for c in doc["commands"]] == [
        ("python -m pytest -q", 0)]
    assert {f["path"] for f in doc["files"]} == {"app.py", "tests/test_health.py"}
    assert all(re.fullmatch(r"[0-9a-f]{64}", f["sha256"]) for f in doc["files"])
    assert [d["outcome"] for d in doc["decisions"]] == ["denied", "denied"]
    assert "rm -rf /" in doc["decisions"][0]["input"]
    assert doc["integrity"]["events_checked"] == doc["runs"][0]["events"]
    md = run(store_dir, "audit", "run-real")
    assert md.returncode == 0, md.stderr
    for heading in ("# Audit of run run-real", "## Summary", "## Integrity", "## Agents",
                    "## Denials and approvals", "## Files changed", "## Workspace diffs",
                    "## Commands", "## Errors", "## Tokens and cost", "## Timeline"):
        assert f"\n{heading}\n" in f"\n{md.stdout}", heading
    assert "| python -m pytest -q | ok | 0 |" in md.stdout
    assert "What it did (6 tool calls, in order):" in md.stdout


def test_audit_shows_decisions_files_diffs_errors_cost_and_unknown_types(
        store_dir: Path) -> None:
    doc = audit_json(store_dir, "audit-rich")
    assert doc["summary"]["status"] == "failed"
    decisions = [(d["tool"], d["kind"], d["outcome"], d["by"]) for d in doc["decisions"]]
    assert decisions == [("WebFetch", "denial", "denied", "policy"),
                         ("Bash", "denial", "denied", "policy"),
                         ("Bash", "approval", "rejected", "user:ana"),
                         ("Bash", "approval", "approved", "user:bo")]
    impl = next(a for a in doc["agents"] if a["agent"] == "implementer")
    assert impl["tools_not_allowed"] == ["WebFetch"]
    assert impl["tool_rules"] == ["Read", "Edit", "Bash(pytest:*)"]
    assert impl["disallowed_tools"] == ["Write"] and impl["allowed_unused"] == ["Read"]
    assert [(c["command"], c["status"], c["exit_code"]) for c in doc["commands"]] == [
        ("pytest -q", "error", 1), ("make deploy", "ok", 0)]
    [diff] = doc["diffs"]
    assert diff["patch"] == PATCH and diff["session"] == "SA" and diff["agent"] == "implementer"
    kinds = sorted(e["kind"] for e in doc["errors"])
    assert kinds == ["budget", "model.retry", "task.failed", "tool.error"]
    models = {m["model"]: (m["turns"], m["tokens"], m["cost_usd"])
              for m in doc["usage"]["by_model"]}
    assert models == {"m-large": (1, 1100, 0.02), "m-small": (1, 330, 0.001)}
    agents = {r["agent"]: r["cost_usd"] for r in doc["usage"]["by_agent"]}
    assert agents == {"implementer": 0.02, "reviewer": 0.001}
    assert doc["unknown_types"] == [{"run": "audit-rich", "type": "thought.recorded",
                                     "events": 1}]
    assert not doc["complete"] and "thought.recorded" in doc["incomplete"][0]["reason"]
    lanes = {lane["session"]: [m["status"] for m in lane["marks"]]
             for lane in doc["timeline"]["lanes"]}
    assert lanes == {"SA": ["ok", "error", "denied", "denied"], "SB": ["ok"]}
    md = run(store_dir, "audit", "audit-rich", "--format", "markdown")
    assert "```diff\n" + PATCH in md.stdout and "thought.recorded" in md.stdout
    assert "used tools its definition does not allow:** WebFetch" in md.stdout
    assert "warning: the record is incomplete" in md.stderr


def test_since_until_picks_every_run_in_the_window(store_dir: Path) -> None:
    both = audit_json(store_dir, "--since", "2026-11-19T00:00:00Z")
    assert [r["id"] for r in both["runs"]] == ["audit-rich", "demo-run-1"]
    assert both["summary"]["runs"] == 2 and both["summary"]["status"] == "mixed"
    assert both["summary"]["agents"] == ["backend-implementer", "implementer", "reviewer"]
    one = audit_json(store_dir, "--since", "2026-11-19T00:00:00Z",
                     "--until", "2026-11-21T00:00:00Z")
    assert [r["id"] for r in one["runs"]] == ["audit-rich"]
    assert one["scope"]["since"].startswith("2026-11-19")
    none = run(store_dir, "audit", "--since", "2026-12-01T00:00:00Z")
    assert none.returncode == 1 and none.stdout == ""
    assert "no runs between 2026-12-01T00:00:00Z and now (2 run(s)" in none.stderr
    md = run(store_dir, "audit", "--since", "2026-11-19T00:00:00Z", "--format", "md")
    assert md.stdout.startswith("# Audit of 2 run(s) from 2026-11-19T00:00:00.000000Z")
    page = run(store_dir, "audit", "--since", "2026-11-19T00:00:00Z", "--format", "html")
    # one timeline per run, each on its own scale (the runs are three days apart)
    assert page.stdout.count("<svg class=timeline") == 2
    mixed = run(store_dir, "audit", "demo", "--since", "1d")
    assert mixed.returncode == 2 and "not both" in mixed.stderr


def test_unknown_run_id_is_one_clear_line(store_dir: Path) -> None:
    out = run(store_dir, "audit", "audit-rixh")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.strip() == ("orchestrail: error: no run 'audit-rixh' in this store; "
                                  "closest: audit-rich")
    page = store_dir / "never.html"
    assert run(store_dir, "audit", "nope", "--format", "html", "-o", str(page)
               ).returncode == 1
    assert not page.exists()  # nothing half-written


def test_edited_event_makes_the_integrity_verdict_broken(store_dir: Path) -> None:
    db = sqlite3.connect(store_dir / "events.db")
    triggers = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='trigger'")]
    for name in triggers:
        db.execute(f"DROP TRIGGER {name}")
    pos, = db.execute("SELECT position FROM events WHERE type='approval.resolved' "
                      "AND stream='session-SB'").fetchone()
    db.execute("UPDATE events SET data=? WHERE position=?",
               (json.dumps({"tool_use_id": "d1", "approved": True, "source": "user:eve"}), pos))
    db.commit()
    db.close()
    out = run(store_dir, "audit", "audit-rich", "--json")
    assert out.returncode == 3, out.stderr
    doc = json.loads(out.stdout)
    validate(doc)
    assert doc["summary"]["integrity"] == "broken"
    [problem] = doc["integrity"]["problems"]
    assert (problem["kind"], problem["stream"], problem["position"]) == (
        "hash-mismatch", "session-SB", pos)
    assert "integrity check FAILED" in out.stderr and f"position {pos}" in out.stderr
    other = run(store_dir, "audit", "demo-run-1", "--json")  # another run is untouched
    assert other.returncode == 0 and json.loads(other.stdout)["integrity"]["ok"]


def test_retention_removed_stream_is_accounted_and_marked_incomplete(store_dir: Path) -> None:
    assert apply_retention(store_dir) == ["session-S1", "session-SA", "session-SB"]
    doc = audit_json(store_dir, "audit-rich")
    assert doc["summary"]["integrity"] == "intact-with-retention"
    assert sorted(r["stream"] for r in doc["integrity"]["removed_streams"]) == [
        "session-SA", "session-SB"]
    assert not doc["complete"]
    assert {g["where"] for g in doc["incomplete"]} >= {"session-SA", "session-SB"}
    assert [t["status"] for t in doc["runs"][0]["tasks"]] == ["completed", "failed"]
    assert all(a["removed_by_retention"] for a in doc["agents"])


def test_html_page_in_headless_chromium(store_dir: Path) -> None:
    record_agent_run(store_dir, "run-real")
    page = store_dir / "audit.html"
    out = run(store_dir, "audit", "run-real", "--format", "html", "-o", str(page))
    assert out.returncode == 0, out.stderr
    body = page.read_text()
    assert body.startswith("<!doctype html>") and "<svg class=timeline" in body
    # self-contained: nothing is fetched (no src/href to a URL, no <link>, no @import)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", body, re.I)
    assert "<link" not in body and "@import" not in body and "url(" not in body
    browser = chromium()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run([browser, *flags, "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert html.count('<svg class="timeline"') == 1
    assert len(re.findall(r'<g class="lane" data-session="', html)) == 1
    assert len(re.findall(r'class="mark denied"', html)) == 2
    assert len(re.findall(r'class="mark ok"', html)) == 4
    assert "rm -rf /" in html and "integrity: intact" in html
    shot = store_dir / "audit.png"
    snap = subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1280,1600",
                           page.as_uri()], capture_output=True, text=True, timeout=120)
    assert snap.returncode == 0, snap.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    keep = os.environ.get("ORCHESTRAIL_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)


def test_long_tables_keep_rows_out_of_the_dom_until_asked(tmp_path: Path) -> None:
    """A generated 1,000-event run (bench.replay's shapes): 238 commands. The closed
    Commands section holds no rows in the DOM; opening it draws the first 100 (inline
    script, run by the real browser), "show more" appends the rest from the JSON block."""
    db = tmp_path / "events.db"
    made = subprocess.run([sys.executable, "-c", "import asyncio, pathlib, bench.replay as b; "
                           f"asyncio.run(b.build(pathlib.Path({str(db)!r}), 1000))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    page = tmp_path / "audit.html"
    out = run(tmp_path, "audit", "bench-replay-run", "--format", "html", "-o", str(page))
    assert out.returncode == 0, out.stderr
    body = page.read_text()
    doc = audit_json(tmp_path, "bench-replay-run")
    commands = len(doc["commands"])
    assert commands == 238 and doc["summary"]["denials"] == 12
    browser = chromium()

    def rows(script: str, toggled: bool = False) -> tuple[int, int]:
        """Rows and "show more" buttons in the Commands section after ``script`` ran.

        ``toggled``: the script opens a <details>, whose toggle event (the page's handler
        draws the rows) is a queued task; a loaded machine can dump the DOM before it ran.
        A listener added after the page's marks <body> once the page's handler has run,
        and the page is rendered again (with a longer budget) until the mark is there."""
        if toggled:
            script = ("document.addEventListener('toggle', function () {"
                      " document.body.setAttribute('data-toggled', 'yes'); }, true);" + script)
        variant = tmp_path / "variant.html"
        variant.write_text(body.replace("</body>", f"<script>{script}</script></body>"))
        budget, deadline = 3000, time.monotonic() + 90
        while True:
            dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                                  f"--virtual-time-budget={budget}", "--dump-dom",
                                  variant.as_uri()], capture_output=True, text=True, timeout=120)
            assert dom.returncode == 0, dom.stderr[-2000:]
            if not toggled or 'data-toggled="yes"' in dom.stdout:
                break
            assert time.monotonic() < deadline, "the toggle event never reached the page"
            budget *= 2
        section = dom.stdout.split('id="commands"')[1].split("</section>")[0]
        section = re.sub(r"<script.*?</script>", "", section, flags=re.S)  # text, not DOM
        return section.count("<tr>") - 1, section.count('class="more"')  # minus the head

    assert rows("") == (0, 1)
    assert rows("document.querySelector('#commands details').open = true;",
                toggled=True) == (100, 1)
    click = ("for (const n of [1, 2, 3]) document.querySelectorAll('button.more')"
             ".forEach(b => b.click());")
    assert rows(click) == (commands, 0)


def test_audit_of_an_orchestrail_run_with_tasks_and_workspace_diffs(tmp_path: Path) -> None:
    """`orchestrail run` (three dependent tasks in git worktrees) records workspace.diff
    per session; the audit shows each patch next to the files the tools wrote."""
    from tests.integration.test_run_cli import CHAIN, WRITE_EACH, cli, project, run_json

    p = project(tmp_path, CHAIN, WRITE_EACH)
    run_id = run_json(p)["run_id"]
    out = cli(p, "audit", "--last", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    validate(doc)
    assert doc["scope"]["runs"] == [run_id] and doc["summary"]["integrity"] == "intact"
    assert [(t["id"], t["status"]) for t in doc["runs"][0]["tasks"]] == [
        ("a", "completed"), ("b", "completed"), ("c", "completed")]
    assert doc["summary"]["tasks"] == 3 and doc["summary"]["sessions"] == 3
    patches = {tuple(f["path"] for f in d["files"]): d for d in doc["diffs"]}
    assert set(patches) == {("a.txt",), ("b.txt",), ()}
    assert "+from b" in patches[("b.txt",)]["patch"] and patches[("b.txt",)]["commit"]
    assert {(f["path"], f["tool"]) for f in doc["files"]} == {("a.txt", "Write"),
                                                             ("b.txt", "Write")}
    # streams checked: the run, the three tasks, the three sessions
    assert doc["integrity"]["streams_checked"] == 7
    page = tmp_path / "run.html"
    assert cli(p, "audit", run_id, "--format", "html", "-o", str(page)).returncode == 0
    dom = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert len(re.findall(r'<g class="lane" data-session="', dom.stdout)) == 3
    assert dom.stdout.count('<pre class="patch">') == 3 and "+from b" in dom.stdout
