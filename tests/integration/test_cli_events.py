"""`orchestrail events` as a user runs it: real processes, the default SQLite store."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ORCHESTRAIL, ROOT

SAMPLE = ROOT / "examples" / "events" / "sample-run.jsonl"


def run(cwd: Path, *args: str, stdin: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith("ORCHESTRAIL_") or k == "ORCHESTRAIL_TEST_PG_URL"}
    full_env.update(env or {})
    return subprocess.run([ORCHESTRAIL, *args], cwd=cwd, input=stdin, capture_output=True,
                          text=True, timeout=60, env=full_env)


def events_json(cwd: Path, *args: str) -> list[dict[str, object]]:
    out = run(cwd, "events", "query", "--all", "--json", *args)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_append_query_verify_round_trip(tmp_path: Path) -> None:
    first = run(tmp_path, "events", "append", "--file", str(SAMPLE))
    assert first.returncode == 0, first.stderr
    assert "appended 15 event(s)" in first.stdout
    assert (tmp_path / ".orchestrail" / "events.db").exists()
    again = run(tmp_path, "events", "append", "--file", str(SAMPLE))
    assert again.returncode == 0, again.stderr
    assert len(events_json(tmp_path)) == 15  # idempotent: the retry added nothing
    tools = events_json(tmp_path, "--run", "demo-run-1", "--type", "tool.*")
    assert [e["type"] for e in tools] == ["tool.requested", "tool.completed", "tool.requested",
                                          "tool.denied", "tool.requested", "tool.completed"]
    denied = events_json(tmp_path, "--type", "tool.denied", "--actor", "agent:backend-implementer")
    assert len(denied) == 1 and denied[0]["stream"] == "session-S1"
    assert "sk-ant-api03-demo" not in json.dumps(events_json(tmp_path))  # redacted on the way in
    ok = run(tmp_path, "verify")
    assert ok.returncode == 0 and ok.stdout.startswith("ok: 15 events in 3 streams")


def test_bad_line_writes_nothing_and_names_the_line(tmp_path: Path) -> None:
    good = '{"stream":"run-1","type":"run.started"}\n'
    bad = '{"stream":"run-1","type":"run.finished","data":[1,2]}\n'
    out = run(tmp_path, "events", "append", stdin=good + good + bad)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("orchestrail: error: stdin line 3: data:")
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / ".orchestrail" / "events.db").exists()


@pytest.mark.parametrize("line,needle", [
    ('{"stream":"run 1","type":"a.b"}', "invalid stream name 'run 1'"),
    ('{"stream":"$x","type":"a.b"}', "reserved"),
    ('{"type":"a.b"}', "no stream"),
    ('{"stream":"s","type":"a b"}', "invalid event type 'a b'"),
    ('{"stream":"s","type":"a.b","colour":1}', "unknown key(s) colour"),
    ('not json', "invalid JSON"),
    ('[1]', "must be a JSON object"),
])
def test_each_bad_input_is_one_clear_line(tmp_path: Path, line: str, needle: str) -> None:
    out = run(tmp_path, "events", "append", stdin=line + "\n")
    assert out.returncode == 2, out
    assert needle in out.stderr and "Traceback" not in out.stderr


def test_wrong_expected_version_exit_1_and_nothing_written(tmp_path: Path) -> None:
    assert run(tmp_path, "events", "append", "--stream", "run-1", "--type", "a.b").returncode == 0
    out = run(tmp_path, "events", "append", "--stream", "run-1", "--type", "a.c",
              "--expected-version", "no-stream")
    assert out.returncode == 1 and "expected no_stream, but it is at version 0" in out.stderr
    assert [e["type"] for e in events_json(tmp_path)] == ["a.b"]


def test_query_paging_cursor_on_stderr(tmp_path: Path) -> None:
    lines = "".join(f'{{"stream":"s-{i % 3}","type":"a.b","data":{{"i":{i}}}}}\n'
                    for i in range(25))
    assert run(tmp_path, "events", "append", stdin=lines).returncode == 0
    page = run(tmp_path, "events", "query", "--limit", "10", "--json")
    assert len(page.stdout.splitlines()) == 10 and "more: --after 10" in page.stderr
    rest = run(tmp_path, "events", "query", "--after", "20", "--json")
    assert [json.loads(x)["data"]["i"] for x in rest.stdout.splitlines()] == [20, 21, 22, 23, 24]


def test_tail_sees_events_from_another_process(tmp_path: Path) -> None:
    assert run(tmp_path, "events", "append", "--stream", "s", "--type", "a.b").returncode == 0
    tail = subprocess.Popen([ORCHESTRAIL, "events", "tail", "--after", "1", "--count", "2",
                             "--json", "--type", "x.*"], cwd=tmp_path, stdout=subprocess.PIPE,
                            text=True)
    try:
        for t in ("x.one", "y.skip", "x.two"):
            assert run(tmp_path, "events", "append", "--stream", "s", "--type", t).returncode == 0
        out, _ = tail.communicate(timeout=30)
    finally:
        tail.kill()
    assert [json.loads(x)["type"] for x in out.splitlines()] == ["x.one", "x.two"]


def test_verify_names_an_edited_event(tmp_path: Path) -> None:
    import sqlite3

    assert run(tmp_path, "events", "append", "--file", str(SAMPLE)).returncode == 0
    db = sqlite3.connect(tmp_path / ".orchestrail" / "events.db")
    triggers = db.execute("SELECT name, sql FROM sqlite_master WHERE type='trigger'").fetchall()
    for name, _ in triggers:
        db.execute(f'DROP TRIGGER "{name}"')
    row = db.execute("SELECT position, id FROM events WHERE type='tool.denied'").fetchone()
    db.execute("UPDATE events SET data = ? WHERE position = ?",
               ('{"tool":"Bash","reason":"allowed after all"}', row[0]))
    db.commit()
    db.close()
    out = run(tmp_path, "verify")
    assert out.returncode == 1
    assert "FAILED" in out.stdout and "[hash-mismatch]" in out.stdout
    assert row[1] in out.stdout and f"position {row[0]}" in out.stdout


def test_store_info_and_retention_dry_run(tmp_path: Path) -> None:
    assert run(tmp_path, "events", "append", "--file", str(SAMPLE)).returncode == 0
    info = run(tmp_path, "store", "info", "--json")
    assert json.loads(info.stdout)["events"] == 15
    dry = run(tmp_path, "store", "retention", "--max-streams", "0")
    assert dry.returncode == 0 and "would remove 3 stream(s)" in dry.stdout
    assert len(events_json(tmp_path)) == 15


def test_unknown_scheme_and_missing_store(tmp_path: Path) -> None:
    out = run(tmp_path, "--store", "redis://x", "events", "query")
    assert out.returncode == 1 and "unknown scheme 'redis'" in out.stderr
    cfg = tmp_path / "orchestrail.yaml"
    cfg.write_text("store:\n  url: sqlite:///.orchestrail/events.db\n  colour: red\n")
    out = run(tmp_path, "events", "query")
    assert out.returncode == 1 and "orchestrail.yaml: store.colour: unknown key" in out.stderr
